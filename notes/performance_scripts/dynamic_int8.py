from onnxruntime.quantization import quantize_dynamic, QuantType
import onnx
quantize_dynamic("fused2.onnx","fused_dyn.onnx", weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul","Attention","Gather"] )
quantize_dynamic("fused2.onnx","fused_dyn_mm.onnx", weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul","Attention"] )
