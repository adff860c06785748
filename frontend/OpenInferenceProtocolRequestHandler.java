// The Open Inference Protocol's health and metadata routes, on TorchServe's own inference port.
//
// TorchServe 0.12.0 answers POST /v2/models/{name}/infer itself, and its handler of this name
// (chained after every other inference route when ts_open_inference_protocol=true) answers the
// rest: GET /v2/health/ready as always true, no model metadata, no model readiness. An endpoint
// plugin cannot add them: TorchServe hands every /v2/... request, infer included, to a plugin
// registered for "v2" and frees the body before the plugin runs (pytorch/serve#2595).
// This class replaces that handler: TorchServe starts with "." (its run folder) first on its
// class path, and tsforge.server.frontend puts this class there. It sees only requests that
// passed the inference key check and that no other inference route took.
//
// What it says comes from TorchServe's own state (models, versions, workers) and, for a model's
// tensors, from oip-metadata.json, which the archive carries (written from the model's contract
// by its codec at build time: tsforge.packaging.archive).
package org.pytorch.serve.http.api.rest;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.io.File;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.pytorch.serve.archive.DownloadArchiveException;
import org.pytorch.serve.archive.model.ModelException;
import org.pytorch.serve.archive.workflow.WorkflowException;
import org.pytorch.serve.http.HttpRequestHandlerChain;
import org.pytorch.serve.util.NettyUtils;
import org.pytorch.serve.wlm.Model;
import org.pytorch.serve.wlm.ModelManager;
import org.pytorch.serve.wlm.ModelVersionedRefs;
import org.pytorch.serve.wlm.WorkerInitializationException;
import org.pytorch.serve.wlm.WorkerState;
import org.pytorch.serve.wlm.WorkerThread;

public class OpenInferenceProtocolRequestHandler extends HttpRequestHandlerChain {

    private static final Pattern ROUTE =
            Pattern.compile(
                    "^/v2(?:/health/(live|ready)|/models/([^/]+)(?:/versions/([^/]+))?(/ready)?)?/?$");
    // Written by the archive builder; a few KiB, so a bigger file is a mistake, never read whole.
    private static final String METADATA = "oip-metadata.json";
    private static final long MAX_METADATA_BYTES = 1 << 20;
    // tsforge.server.foreground's drain flag, in the run folder TorchServe starts in.
    private static final String DRAINING = "draining";

    public OpenInferenceProtocolRequestHandler() {}

    @Override
    public void handleRequest(
            ChannelHandlerContext ctx,
            FullHttpRequest req,
            QueryStringDecoder decoder,
            String[] segments)
            throws ModelException, DownloadArchiveException, WorkflowException,
                    WorkerInitializationException {
        Matcher route = ROUTE.matcher(decoder.path());
        if (!route.matches()) {
            chain.handleRequest(ctx, req, decoder, segments);
            return;
        }
        if (!HttpMethod.GET.equals(req.method()) && !HttpMethod.HEAD.equals(req.method())) {
            // HEAD is answered as GET: Netty's codec drops the body of an answer to a HEAD.
            send(ctx, HttpResponseStatus.METHOD_NOT_ALLOWED, error("method_not_allowed",
                    "the Open Inference Protocol's health and metadata routes take GET"));
            return;
        }
        String health = route.group(1);
        String name = route.group(2);
        if (name != null) {
            model(ctx, name, route.group(3), route.group(4) != null);
        } else if ("live".equals(health)) {
            send(ctx, HttpResponseStatus.OK, flag("live", true));
        } else if ("ready".equals(health)) {
            // Every registered model's default version has a worker with its model loaded, and
            // no drain has begun. (TorchServe's /ping test counts a worker still loading.)
            boolean ready = !new File(DRAINING).exists();
            for (Map.Entry<String, ModelVersionedRefs> entry : ModelManager.getInstance().getAllModels()) {
                ready &= loaded(entry.getValue().getDefaultModel()); // null while being unregistered
            }
            send(ctx, ready ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE,
                    flag("ready", ready));
        } else {
            JsonObject server = new JsonObject();
            server.addProperty("name", "tsforge");
            server.addProperty("version", "1");
            JsonArray extensions = new JsonArray();
            extensions.add("binary_tensor_data");
            server.add("extensions", extensions);
            send(ctx, HttpResponseStatus.OK, server);
        }
    }

    private static void model(ChannelHandlerContext ctx, String name, String version, boolean readyRoute) {
        ModelManager models = ModelManager.getInstance();
        Model chosen;
        TreeSet<String> versions = new TreeSet<>();
        try {
            chosen = models.getModel(name, version); // null: no such model
        } catch (ModelException e) { // the model, without that version (or its default, mid-unregister)
            String what = version == null ? "has no default version now" : "has no version '" + version + "'";
            send(ctx, HttpResponseStatus.NOT_FOUND, error("model_not_found", "model '" + name + "' " + what));
            return;
        }
        if (chosen == null) {
            send(ctx, HttpResponseStatus.NOT_FOUND,
                    error("model_not_found", "model '" + name + "' is not registered"));
            return;
        }
        if (readyRoute) {
            boolean ready = loaded(chosen);
            JsonObject answer = flag("ready", ready);
            answer.addProperty("name", name);
            send(ctx, ready ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE, answer);
            return;
        }
        JsonObject answer = new JsonObject();
        answer.addProperty("name", name);
        JsonArray listed = new JsonArray();
        try {
            for (Map.Entry<String, Model> entry : models.getAllModelVersions(name)) {
                versions.add(entry.getKey());
            }
        } catch (ModelException e) { // unregistered since: what was chosen is still listed
            versions.add(chosen.getVersion());
        }
        versions.forEach(listed::add);
        answer.add("versions", listed);
        File file = new File(chosen.getModelDir(), METADATA);
        try {
            if (file.length() > MAX_METADATA_BYTES) {
                throw new IllegalStateException(METADATA + " is over " + MAX_METADATA_BYTES + " bytes");
            }
            try (Reader reader = Files.newBufferedReader(file.toPath(), StandardCharsets.UTF_8)) {
                for (Map.Entry<String, JsonElement> e : JsonParser.parseReader(reader).getAsJsonObject().entrySet()) {
                    answer.add(e.getKey(), e.getValue());
                }
            }
        } catch (Exception e) { // an archive built before the file existed, or a broken one
            send(ctx, HttpResponseStatus.INTERNAL_SERVER_ERROR, error("metadata_unreadable",
                    "the archive of " + name + " has no readable " + METADATA
                            + ": rebuild it (tsforge build --force)"));
            return;
        }
        send(ctx, HttpResponseStatus.OK, answer);
    }

    private static boolean loaded(Model model) {
        if (model == null) {
            return false;
        }
        for (WorkerThread worker : ModelManager.getInstance().getWorkers(model.getModelVersionName())) {
            if (worker.getState() == WorkerState.WORKER_MODEL_LOADED) {
                return true;
            }
        }
        return false;
    }

    private static JsonObject flag(String key, boolean value) {
        JsonObject answer = new JsonObject();
        answer.addProperty(key, value);
        return answer;
    }

    // The protocol's error body is {"error": ...}: the code there, and "detail", as the handlers'
    // own refusals on the same port (handlers/base.py) are written.
    private static JsonObject error(String code, String detail) {
        JsonObject answer = new JsonObject();
        answer.addProperty("error", code);
        answer.addProperty("detail", detail);
        return answer;
    }

    private static void send(ChannelHandlerContext ctx, HttpResponseStatus status, JsonObject body) {
        FullHttpResponse response = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, true);
        response.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON);
        if (status.equals(HttpResponseStatus.METHOD_NOT_ALLOWED)) {
            response.headers().set(HttpHeaderNames.ALLOW, "GET, HEAD");
        }
        response.content().writeCharSequence(body.toString(), StandardCharsets.UTF_8);
        NettyUtils.sendHttpResponse(ctx, response, true);
    }
}
