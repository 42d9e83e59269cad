// sdk_compat.mjs MOCK_URL: the official OpenAI, Anthropic and Gemini SDKs
// against weft mock. Every call must parse without error and return the
// mock's deterministic text and token usage. Prints TAP; exit 1 on failure.
import OpenAI from "openai";
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
