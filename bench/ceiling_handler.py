"""The benchmark's ceiling: a TorchServe handler that answers every request with the same few
bytes, reading nothing and running no model. What TorchServe serves with it at a setting is
what its frontend, batching and worker protocol carry on this machine, so no handler's served
throughput can pass it: it bounds a model's served / in-process ratio (bench.tuning). Archived
with a model's chosen settings and example request; never shipped. One class only: TorchServe
loads a handler module's single class."""


class CeilingHandler:
    def initialize(self, context) -> None:
        self.initialized = True

    def handle(self, data, context) -> list[str]:
        return ['{"ceiling": true}'] * len(data)
