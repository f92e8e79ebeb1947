// A Node.js client of the streamret API: @grpc/grpc-js with the messages read from the .proto at run time, as a
// client in another language would use it. tests/test_interop_node.py runs it against a server and checks what it
// prints (one JSON object) against the Python client.
//
//   node tests/node/interop.js HOST:PORT TOKEN ARROW_FILE
//
// ARROW_FILE holds an Arrow IPC stream (columns id, text) for Batch.EmbedTable; the answer's bytes come back
// base64-encoded.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, token, arrowFile] = process.argv.slice(2);
const definition = protoLoader.loadSync("streamret/v1/streamret.proto", {
  includeDirs: [path.join(__dirname, "..", "..", "proto")],
  keepCase: true, // field names as the .proto spells them: stream_id, applied_seq ...
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).streamret.v1;
const credentials = grpc.credentials.createInsecure();
const streams = new v1.StreamRet(target, credentials);
const batch = new v1.Batch(target, credentials);
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${token}`);

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 60000 }, (err, response) =>
      err ? reject(new Error(`${method}: ${err.code} ${err.details}`)) : resolve(response));
  });
}

function append(requests) {
  return new Promise((resolve, reject) => {
    const call = streams.Append(metadata, { deadline: Date.now() + 60000 });
    const acks = [];
    call.on("data", (ack) => acks.push(ack));
    call.on("error", (err) => reject(new Error(`Append: ${err.code} ${err.details}`)));
    call.on("end", () => resolve(acks));
    for (const request of requests) call.write(request);
    call.end();
  });
}

async function main() {
  const opened = await unary(streams, "OpenStream", { stream_id: "node-1", create_if_missing: true });
  // the second chunk is raw bytes that cut "é" (0xc3 0xa9) in two; the third ends it and flushes
  const acks = await append([
    { stream_id: "node-1", seq: 1, text: "A stream from Node. It was read in three chunks, caf" },
    { stream_id: "node-1", seq: 2, data: Buffer.from([0xc3]) },
    { stream_id: "node-1", seq: 3, data: Buffer.from([0xa9, 0x2e]), flush: true, durable: true },
  ]);
  const embedding = await unary(streams, "GetEmbedding", { stream_id: "node-1" });
  const summary = await unary(streams, "Summarize", { stream_id: "node-1", mode: "MODE_EXTRACTIVE" });
  const exported = await unary(streams, "ExportState", { stream_id: "node-1" });
  // ImportStateRequest.state takes ExportState's answer as it came
  const imported = await unary(streams, "ImportState", { stream_id: "node-2", state: exported });
  const importedEmbedding = await unary(streams, "GetEmbedding", { stream_id: "node-2" });
  const closed = await unary(streams, "CloseStream", { stream_id: "node-1", max_segments: 2 });
  const table = await unary(batch, "EmbedTable", { arrow_ipc: fs.readFileSync(arrowFile) });
  const info = await unary(streams, "GetModelInfo", {});
  const out = {
    opened, acks, embedding, summary, imported, imported_embedding: importedEmbedding, closed,
    embed_table_ipc: Buffer.from(table.arrow_ipc).toString("base64"), model_info: info,
  };
  process.stdout.write(JSON.stringify(out));
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
