// sdk_compat.mjs MOCK_URL: the official OpenAI, Anthropic and Gemini SDKs
// against weft mock. Every call must parse without error and return the
// mock's deterministic text and token usage; the batch and file methods
// (OpenAI Files + Batches, Anthropic Message Batches) run batches to their
// end with the mock's time compressed. Prints TAP; exit 1 on failure.
import OpenAI, { toFile } from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { GoogleGenAI } from "@google/genai";

const url = process.argv[2];
const PROMPT = "Say hello to weft";
const ANSWER = "echo: Say hello to weft";   // the mock's reply
const OUT = 6;                              // tokens of ANSWER (echo : Say hello to weft)
let n = 0, failed = 0;
function check(cond, what, detail) {
  n++;
  if (cond) console.log(`ok ${n} - ${what}`);
  else { failed++; console.log(`not ok ${n} - ${what}${detail !== undefined ? ": " + JSON.stringify(detail) : ""}`); }
}
async function step(what, fn) {
  try { await fn(); } catch (e) { check(false, what + " threw", String(e && e.stack || e)); }
}

const openai = new OpenAI({ apiKey: "sk-weft-mock", baseURL: url + "/v1", maxRetries: 0 });
await step("openai chat", async () => {
  const r = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: PROMPT }] });
  check(r.choices[0].message.content === ANSWER, "openai chat text", r.choices[0].message.content);
  check(r.usage.prompt_tokens === 10 && r.usage.completion_tokens === OUT, "openai chat usage", r.usage);
  check(r.choices[0].finish_reason === "stop", "openai finish_reason", r.choices[0].finish_reason);
});
await step("openai stream", async () => {
  const s = await openai.chat.completions.create({ model: "gpt-4o-mini", stream: true,
    stream_options: { include_usage: true }, messages: [{ role: "user", content: PROMPT }] });
  let text = "", usage = null;
  for await (const c of s) { if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content; if (c.usage) usage = c.usage; }
  check(text === ANSWER, "openai stream text", text);
  check(usage && usage.completion_tokens === OUT, "openai stream usage chunk", usage);
});
await step("openai embeddings", async () => {
  const e = await openai.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b c"] }); // SDK asks for base64
  check(e.data.length === 2 && e.data[0].embedding.length === 8, "openai embeddings (base64 decoded by the SDK)", e.data[0]);
  const norm = Math.sqrt(e.data[0].embedding.reduce((s, x) => s + x * x, 0));
  check(Math.abs(norm - 1) < 1e-3, "openai embedding is a unit vector", norm);
  check(e.usage.prompt_tokens === 3, "openai embeddings usage", e.usage);
});
await step("openai models", async () => {
  const list = await openai.models.list();
  const ids = []; for await (const m of list) ids.push(m.id);
  check(ids.includes("gpt-4o-mini"), "openai models list", ids);
});
await step("openai auth error", async () => {
  const bad = new OpenAI({ apiKey: "sk-wrong-key-123456", baseURL: url + "/v1", maxRetries: 0 });
  try { await bad.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] }); check(false, "openai 401 raises"); }
  catch (e) { check(e.status === 401 && e.code === "invalid_api_key", "openai 401 parsed by the SDK", { status: e.status, code: e.code }); }
});

// Batches: the mock's processing time is set through /_mock/batch; a job is
// polled every 50 ms, at most 200 times (10 s).
async function batchTiming(opts) {
  const r = await fetch(url + "/_mock/batch", { method: "POST", body: JSON.stringify(opts) });
  if (r.status !== 200) throw new Error("/_mock/batch " + r.status + " " + await r.text());
}
async function pollUntil(get, done) {
  let b;
  for (let i = 0; i < 200; i++) {
    b = await get();
    if (done(b)) return b;
    await new Promise((res) => setTimeout(res, 50));
  }
  return b;
}
const jsonl = (text) => text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
const BATCH_PROMPTS = { r1: "one", r2: "two", r3: "three", r4: "four", r5: "five" };
const BAD_ID = "r3"; // its request has no messages: a 400 in the error file

await step("openai files + batches", async () => {
  await batchTiming({ delay: 0.3 });
  const lines = Object.entries(BATCH_PROMPTS).map(([id, text]) => JSON.stringify({
    custom_id: id, method: "POST", url: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", messages: id === BAD_ID ? [] : [{ role: "user", content: text }] } }));
  const jsonlText = lines.join("\n") + "\n";
  const f = await openai.files.create({ file: await toFile(Buffer.from(jsonlText), "batch.jsonl"), purpose: "batch" });
  check(typeof f.id === "string" && f.object === "file" && f.purpose === "batch" && f.filename === "batch.jsonl" &&
        f.bytes === Buffer.byteLength(jsonlText), "openai files.create (multipart upload)", f);
  const g = await openai.files.retrieve(f.id);
  check(g.id === f.id && g.bytes === f.bytes && g.filename === "batch.jsonl", "openai files.retrieve", g);
  const created = await openai.batches.create({ input_file_id: f.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  check(created.object === "batch" && created.input_file_id === f.id && created.endpoint === "/v1/chat/completions" &&
        created.status === "validating", "openai batches.create", created);
  const b = await pollUntil(() => openai.batches.retrieve(created.id), (b) => ["completed", "failed", "expired", "cancelled"].includes(b.status));
  check(b.status === "completed", "openai batch completed", b.status);
  check(b.request_counts.total === 5 && b.request_counts.completed === 4 && b.request_counts.failed === 1,
        "openai batch request_counts", b.request_counts);
  check(typeof b.output_file_id === "string" && typeof b.error_file_id === "string" && typeof b.completed_at === "number",
        "openai batch output_file_id, error_file_id, completed_at", b);
  const out = jsonl(await (await openai.files.content(b.output_file_id)).text());
  check(out.length === 4, "openai batch output file has 4 lines", out.length);
  const byId = Object.fromEntries(out.map((l) => [l.custom_id, l]));
  for (const [id, text] of Object.entries(BATCH_PROMPTS)) {
    if (id === BAD_ID) continue;
    const l = byId[id];
    check(l && l.error === null && l.response.status_code === 200 &&
          l.response.body.choices[0].message.content === "echo: " + text, `openai batch output ${id}`, l);
  }
  const errs = jsonl(await (await openai.files.content(b.error_file_id)).text());
  check(errs.length === 1 && errs[0].custom_id === BAD_ID && errs[0].response.status_code === 400 &&
        errs[0].response.body.error.type === "invalid_request_error", "openai batch error file", errs);
  const ids = []; for await (const x of openai.batches.list()) ids.push(x.id);
  check(ids.includes(b.id), "openai batches.list", ids);
  const fids = []; for await (const x of openai.files.list()) fids.push(x.id);
  check(fids.includes(f.id) && fids.includes(b.output_file_id), "openai files.list", fids);
  const d = await openai.files.delete(f.id);
  check(d.id === f.id && d.deleted === true, "openai files.delete", d);
  try { await openai.files.retrieve(f.id); check(false, "openai deleted file is gone"); }
  catch (e) { check(e.status === 404, "openai deleted file is gone (404)", e.status); }
});
await step("openai batch cancel", async () => {
  await batchTiming({ delay: 30 });
  const lines = ["c1", "c2", "c3"].map((id) => JSON.stringify({ custom_id: id, method: "POST", url: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", messages: [{ role: "user", content: id }] } }));
  const f = await openai.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), "cancel.jsonl"), purpose: "batch" });
  const created = await openai.batches.create({ input_file_id: f.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  const running = await pollUntil(() => openai.batches.retrieve(created.id), (b) => b.status !== "validating");
  check(running.status === "in_progress", "openai batch in_progress", running.status);
  const c = await openai.batches.cancel(created.id);
  check(c.id === created.id && c.status === "cancelling" && typeof c.cancelling_at === "number", "openai batches.cancel", c);
  const b = await pollUntil(() => openai.batches.retrieve(created.id), (b) => b.status !== "cancelling");
  check(b.status === "cancelled" && typeof b.cancelled_at === "number", "openai batch cancelled", b.status);
  check(b.request_counts.total === 3 && b.request_counts.completed === 0 && b.request_counts.failed === 3,
        "openai cancelled batch request_counts", b.request_counts);
  check(b.output_file_id === null && typeof b.error_file_id === "string", "openai cancelled batch has only an error file", b);
  const errs = jsonl(await (await openai.files.content(b.error_file_id)).text());
  check(errs.length === 3 && errs.every((l) => l.response === null && l.error.code === "batch_cancelled"),
        "openai cancelled batch error lines: batch_cancelled", errs);
  await openai.files.delete(f.id);
});
await step("batch timing reset", () => batchTiming({ delay: 2 }));

const anthropic = new Anthropic({ apiKey: "sk-ant-weft-mock", baseURL: url, maxRetries: 0 });
await step("anthropic messages", async () => {
  const m = await anthropic.messages.create({ model: "claude-3-5-haiku-latest", max_tokens: 100, messages: [{ role: "user", content: PROMPT }] });
  check(m.content[0].text === ANSWER, "anthropic text", m.content);
  check(m.usage.input_tokens === 7 && m.usage.output_tokens === OUT, "anthropic usage", m.usage);
  check(m.stop_reason === "end_turn", "anthropic stop_reason", m.stop_reason);
});
await step("anthropic stream", async () => {
  const s = anthropic.messages.stream({ model: "claude-3-5-haiku-latest", max_tokens: 100, messages: [{ role: "user", content: PROMPT }] });
  let text = "";
  s.on("text", (t) => { text += t; });
  const final = await s.finalMessage();
  check(text === ANSWER && final.content[0].text === ANSWER, "anthropic stream text", text);
  check(final.usage.output_tokens === OUT, "anthropic stream usage", final.usage);
});
await step("anthropic max_tokens", async () => {
  const m = await anthropic.messages.create({ model: "claude-3-5-haiku-latest", max_tokens: 2, messages: [{ role: "user", content: PROMPT }] });
  check(m.stop_reason === "max_tokens" && m.content[0].text === "echo:", "anthropic max_tokens cut", m);
});
await step("anthropic overloaded", async () => {
  await fetch(url + "/_mock/faults", { method: "POST", body: JSON.stringify([{ dialect: "anthropic", sequence: [529] }]) });
  try { await anthropic.messages.create({ model: "claude-3-5-haiku-latest", max_tokens: 10, messages: [{ role: "user", content: "x" }] }); check(false, "anthropic 529 raises"); }
  catch (e) { check(e.status === 529 && e.error?.error?.type === "overloaded_error", "anthropic 529 overloaded_error parsed", { status: e.status, error: e.error }); }
  await fetch(url + "/_mock/faults", { method: "POST", body: "[]" });
});

await step("anthropic message batches", async () => {
  await batchTiming({ delay: 0.3 });
  const requests = Object.entries(BATCH_PROMPTS).map(([id, text]) => ({ custom_id: id,
    params: id === BAD_ID ? { model: "claude-3-5-haiku-latest", messages: [{ role: "user", content: text }] } // no max_tokens
                          : { model: "claude-3-5-haiku-latest", max_tokens: 100, messages: [{ role: "user", content: text }] } }));
  const created = await anthropic.messages.batches.create({ requests });
  check(created.type === "message_batch" && created.processing_status === "in_progress" && created.results_url === null,
        "anthropic batches.create", created);
  const b = await pollUntil(() => anthropic.messages.batches.retrieve(created.id), (b) => b.processing_status === "ended");
  check(b.processing_status === "ended" && typeof b.ended_at === "string" && typeof b.results_url === "string",
        "anthropic batch ended with a results_url", b);
  const rc = b.request_counts;
  check(rc.succeeded === 4 && rc.errored === 1 && rc.processing === 0 && rc.canceled === 0 && rc.expired === 0,
        "anthropic batch request_counts", rc);
  const results = {};
  for await (const r of await anthropic.messages.batches.results(created.id)) results[r.custom_id] = r.result;
  check(Object.keys(results).length === 5, "anthropic batches.results has 5 lines", Object.keys(results));
  for (const [id, text] of Object.entries(BATCH_PROMPTS)) {
    const r = results[id];
    if (id === BAD_ID) check(r && r.type === "errored" && r.error.type === "error" && r.error.error.type === "invalid_request_error",
                             `anthropic batch result ${id} errored`, r);
    else check(r && r.type === "succeeded" && r.message.content[0].text === "echo: " + text, `anthropic batch result ${id}`, r);
  }
  const ids = []; for await (const x of anthropic.messages.batches.list()) ids.push(x.id);
  check(ids.includes(created.id), "anthropic batches.list", ids);
  const d = await anthropic.messages.batches.delete(created.id);
  check(d.id === created.id && d.type === "message_batch_deleted", "anthropic batches.delete", d);
  try { await anthropic.messages.batches.retrieve(created.id); check(false, "anthropic deleted batch is gone"); }
  catch (e) { check(e.status === 404, "anthropic deleted batch is gone (404)", e.status); }
});
await step("anthropic batch cancel", async () => {
  await batchTiming({ delay: 30 });
  const requests = ["c1", "c2", "c3"].map((id) => ({ custom_id: id,
    params: { model: "claude-3-5-haiku-latest", max_tokens: 100, messages: [{ role: "user", content: id }] } }));
  const created = await anthropic.messages.batches.create({ requests });
  const c = await anthropic.messages.batches.cancel(created.id);
  check(c.id === created.id && c.processing_status === "canceling" && typeof c.cancel_initiated_at === "string",
        "anthropic batches.cancel", c);
  const b = await pollUntil(() => anthropic.messages.batches.retrieve(created.id), (b) => b.processing_status === "ended");
  check(b.processing_status === "ended" && b.request_counts.canceled === 3 && b.request_counts.succeeded === 0,
        "anthropic cancelled batch ended, request_counts.canceled", b.request_counts);
  const types = [];
  for await (const r of await anthropic.messages.batches.results(created.id)) types.push(r.result.type);
  check(types.length === 3 && types.every((t) => t === "canceled"), "anthropic cancelled batch results: canceled", types);
  const d = await anthropic.messages.batches.delete(created.id);
  check(d.type === "message_batch_deleted", "anthropic batches.delete of a cancelled batch", d);
});
await step("batch timing reset", () => batchTiming({ delay: 2 }));

const genai = new GoogleGenAI({ apiKey: "weft-mock-key", httpOptions: { baseUrl: url } });
await step("gemini generateContent", async () => {
  const r = await genai.models.generateContent({ model: "gemini-2.0-flash", contents: PROMPT });
  check(r.text === ANSWER, "gemini text", r.text);
  check(r.usageMetadata.promptTokenCount === 4 && r.usageMetadata.candidatesTokenCount === OUT, "gemini usage", r.usageMetadata);
});
await step("gemini stream", async () => {
  const s = await genai.models.generateContentStream({ model: "gemini-2.0-flash", contents: PROMPT });
  let text = "", usage = null;
  for await (const c of s) { text += c.text ?? ""; if (c.usageMetadata) usage = c.usageMetadata; }
  check(text === ANSWER, "gemini stream text", text);
  check(usage && usage.candidatesTokenCount === OUT, "gemini stream usage", usage);
});
await step("gemini embedContent", async () => {
  const r = await genai.models.embedContent({ model: "text-embedding-004", contents: ["a", "b c"] });
  check(r.embeddings.length === 2 && r.embeddings[0].values.length === 8, "gemini embeddings", r.embeddings);
});

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
