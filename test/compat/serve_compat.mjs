// serve_compat.mjs GATEWAY_URL MOCK_URL: the official OpenAI and Anthropic
// SDKs as clients of `weft serve`, which points at `weft mock` (see
// test/integration/serve_sdk_test.sh for the configuration). Chat, streams,
// tools, embeddings and models in both dialects; errors as the SDKs' typed
// errors; a call that fails over inside weft; a stream the client aborts
// makes the mock see its upstream connection closed. Prints TAP; exit 1 on
// failure.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const [url, mockUrl] = process.argv.slice(2);
const KEY = process.env.GW_KEY_ALICE, KEY_BOB = process.env.GW_KEY_BOB;
const PROMPT = "Say hello to weft";
const ANSWER = "echo: Say hello to weft";
let n = 0, failed = 0;
function check(cond, what, detail) {
  n++;
  if (cond) console.log(`ok ${n} - ${what}`);
  else { failed++; console.log(`not ok ${n} - ${what}${detail !== undefined ? ": " + JSON.stringify(detail) : ""}`); }
}
async function step(what, fn) {
  try { await fn(); } catch (e) { check(false, what + " threw", String(e && e.stack || e)); }
}
async function raises(what, fn, test) {
  try { await fn(); check(false, what + ": no error raised"); }
  catch (e) { check(test(e), what, { name: e && e.constructor && e.constructor.name, status: e.status, error: e.error, headers: e.headers && Object.fromEntries(e.headers) }); }
}

const openai = new OpenAI({ apiKey: KEY, baseURL: url + "/v1", maxRetries: 0 });
const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
const weather = { type: "function", function: { name: "get_weather", description: "The weather in a city",
  parameters: { type: "object", properties: { text: { type: "string" } } } } };

// ---------------------------------------------------------------- OpenAI
await step("openai chat", async () => {
  const r = await openai.chat.completions.create({ model: "fast", messages: [{ role: "user", content: PROMPT }] });
  check(r.choices[0].message.content === ANSWER, "openai chat text", r.choices[0].message.content);
  check(r.model === "fast" && r.choices[0].finish_reason === "stop", "openai chat model and finish_reason", r);
  check(r.usage.completion_tokens === 6 && r.usage.prompt_tokens > 0, "openai chat usage", r.usage);
});
await step("openai chat served by an Anthropic model", async () => {
  const r = await openai.chat.completions.create({ model: "claude", max_tokens: 50,
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: PROMPT }] });
  check(r.choices[0].message.content === ANSWER, "openai dialect, anthropic provider", r.choices[0].message);
});
await step("openai stream", async () => {
  const s = await openai.chat.completions.create({ model: "fast", stream: true,
    stream_options: { include_usage: true }, messages: [{ role: "user", content: PROMPT }] });
  let text = "", usage = null, finish = null;
  for await (const c of s) {
    if (c.choices[0]?.delta?.content) text += c.choices[0].delta.content;
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    if (c.usage) usage = c.usage;
  }
  check(text === ANSWER && finish === "stop", "openai stream text", { text, finish });
  check(usage && usage.completion_tokens === 6, "openai stream usage chunk", usage);
});
await step("openai tools", async () => {
  const r = await openai.chat.completions.create({ model: "fast", tools: [weather], tool_choice: "required",
    messages: [{ role: "user", content: "What is the weather in Paris?" }] });
  const tc = r.choices[0].message.tool_calls;
  check(r.choices[0].finish_reason === "tool_calls" && tc && tc[0].function.name === "get_weather",
    "openai tool call", r.choices[0]);
  const args = JSON.parse(tc[0].function.arguments);
  check(args.text === "What is the weather in Paris?", "openai tool call arguments", args);
  const r2 = await openai.chat.completions.create({ model: "claude", max_tokens: 50, tools: [weather],
    messages: [{ role: "user", content: "What is the weather in Paris?" }, r.choices[0].message,
               { role: "tool", tool_call_id: tc[0].id, content: "sunny" }] });
  check(r2.choices[0].message.content === "echo: sunny", "openai tool result answered (by an anthropic model)", r2.choices[0].message);
  const s = await openai.chat.completions.create({ model: "fast", stream: true, tools: [weather],
    tool_choice: { type: "function", function: { name: "get_weather" } }, messages: [{ role: "user", content: "Paris?" }] });
  const final = await s.finalChatCompletion?.() ?? null;
  if (final) {
    check(final.choices[0].message.tool_calls?.[0]?.function?.name === "get_weather", "openai streamed tool call", final.choices[0]);
  } else {
    let name = null, finish = null;
    for await (const c of s) { const d = c.choices[0]?.delta; if (d?.tool_calls) name = d.tool_calls[0].function?.name ?? name; if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason; }
    check(name === "get_weather" && finish === "tool_calls", "openai streamed tool call", { name, finish });
  }
});
await step("openai embeddings", async () => {
  const e = await openai.embeddings.create({ model: "emb", input: ["first text", "second text"] }); // the SDK asks for base64
  check(e.data.length === 2 && e.data[0].embedding.length === 8, "openai embeddings (base64 decoded by the SDK)", e.data[0]);
  const norm = Math.sqrt(e.data[0].embedding.reduce((s, x) => s + x * x, 0));
  check(Math.abs(norm - 1) < 1e-3, "openai embedding is a unit vector", norm);
  check(e.data[0].embedding.join() !== e.data[1].embedding.join(), "openai embeddings differ per input");
  const f = await openai.embeddings.create({ model: "emb", input: "first text", encoding_format: "float" });
  check(Math.abs(f.data[0].embedding[0] - e.data[0].embedding[0]) < 1e-5, "openai float and base64 embeddings agree", f.data[0].embedding[0]);
});
await step("openai models", async () => {
  const ids = []; for await (const m of openai.models.list()) ids.push(m.id);
  check(["claude", "emb", "failover", "fast"].every(x => ids.includes(x)), "openai models list (the aliases)", ids);
  const bob = new OpenAI({ apiKey: KEY_BOB, baseURL: url + "/v1", maxRetries: 0 });
  const bids = []; for await (const m of bob.models.list()) bids.push(m.id);
  check(bids.join() === "fast", "openai models list of a key allowed one model", bids);
  const m = await openai.models.retrieve("fast");
  check(m.id === "fast", "openai model retrieve", m);
});
await step("openai failover inside weft", async () => {
  const r = await openai.chat.completions.create({ model: "failover", messages: [{ role: "user", content: PROMPT }] }).withResponse();
  check(r.data.choices[0].message.content === ANSWER, "openai call that failed over succeeds", r.data.choices[0]);
  check(r.response.headers.get("x-weft-provider") === "openai", "x-weft-provider header", r.response.headers.get("x-weft-provider"));
});
await step("openai errors", async () => {
  const bad = new OpenAI({ apiKey: "sk-not-a-gateway-key", baseURL: url + "/v1", maxRetries: 0 });
  await raises("openai 401 is AuthenticationError", () => bad.chat.completions.create({ model: "fast", messages: [{ role: "user", content: "x" }] }),
    e => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.headers.get("x-weft-error-kind") === "unauthenticated");
  await raises("openai 400 is BadRequestError", () => openai.chat.completions.create({ model: "fast", messages: [] }),
    e => e instanceof OpenAI.BadRequestError && e.status === 400 && e.headers.get("x-weft-error-kind") === "invalid_request");
  await raises("openai unknown model is NotFoundError", () => openai.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    e => e instanceof OpenAI.NotFoundError && e.code === "model_not_found");
  const bob = new OpenAI({ apiKey: KEY_BOB, baseURL: url + "/v1", maxRetries: 0 });
  await raises("openai model not allowed to the key is NotFoundError", () => bob.chat.completions.create({ model: "claude", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    e => e instanceof OpenAI.NotFoundError && e.status === 404);
  await raises("openai upstream 429 is RateLimitError with Retry-After", () => openai.chat.completions.create({ model: "limited", messages: [{ role: "user", content: "x" }] }),
    e => e instanceof OpenAI.RateLimitError && e.status === 429 && Number(e.headers.get("retry-after")) >= 1 &&
         e.headers.get("x-weft-error-kind") === "rate_limited");
});

// ------------------------------------------------------------- Anthropic
await step("anthropic messages", async () => {
  const m = await anthropic.messages.create({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: PROMPT }] });
  check(m.content[0].type === "text" && m.content[0].text === ANSWER, "anthropic text", m.content);
  check(m.stop_reason === "end_turn" && m.usage.output_tokens === 6, "anthropic stop_reason and usage", m);
  const o = await anthropic.messages.create({ model: "fast", max_tokens: 100, system: "Be brief.", messages: [{ role: "user", content: PROMPT }] });
  check(o.content[0].text === ANSWER, "anthropic dialect, openai provider", o.content);
});
await step("anthropic stream", async () => {
  const s = anthropic.messages.stream({ model: "claude", max_tokens: 100, messages: [{ role: "user", content: PROMPT }] });
  let text = "";
  s.on("text", t => { text += t; });
  const final = await s.finalMessage();
  check(text === ANSWER && final.content[0].text === ANSWER, "anthropic stream text", { text, final: final.content });
  check(final.stop_reason === "end_turn" && final.usage.output_tokens === 6, "anthropic stream usage", final.usage);
});
await step("anthropic tools", async () => {
  const tools = [{ name: "get_weather", description: "The weather", input_schema: { type: "object", properties: { text: { type: "string" } } } }];
  const m = await anthropic.messages.create({ model: "claude", max_tokens: 100, tools, tool_choice: { type: "any" },
    messages: [{ role: "user", content: "Weather in Paris?" }] });
  const tu = m.content.find(b => b.type === "tool_use");
  check(m.stop_reason === "tool_use" && tu && tu.name === "get_weather" && tu.input.text === "Weather in Paris?", "anthropic tool_use", m.content);
  const m2 = await anthropic.messages.create({ model: "fast", max_tokens: 100, tools,
    messages: [{ role: "user", content: "Weather in Paris?" }, { role: "assistant", content: m.content },
               { role: "user", content: [{ type: "tool_result", tool_use_id: tu.id, content: "rainy" }] }] });
  check(m2.content[0].text === "echo: rainy", "anthropic tool_result answered (by an openai model)", m2.content);
  const s = anthropic.messages.stream({ model: "claude", max_tokens: 100, tools, tool_choice: { type: "tool", name: "get_weather" },
    messages: [{ role: "user", content: "Weather in Rome?" }] });
  const f = await s.finalMessage();
  const stu = f.content.find(b => b.type === "tool_use");
  check(f.stop_reason === "tool_use" && stu && stu.input.text === "Weather in Rome?", "anthropic streamed tool_use", f.content);
});
await step("anthropic models", async () => {
  const ids = []; for await (const m of anthropic.models.list()) ids.push(m.id);
  check(ids.includes("claude") && ids.includes("fast"), "anthropic models list", ids);
});
await step("anthropic errors", async () => {
  const bad = new Anthropic({ apiKey: "sk-ant-not-a-gateway-key", baseURL: url, maxRetries: 0 });
  await raises("anthropic 401 is AuthenticationError", () => bad.messages.create({ model: "claude", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    e => e instanceof Anthropic.AuthenticationError && e.status === 401 && e.error?.error?.type === "authentication_error");
  await raises("anthropic 400 is BadRequestError", () => anthropic.messages.create({ model: "claude", messages: [{ role: "user", content: "x" }] }),
    e => e instanceof Anthropic.BadRequestError && e.error?.error?.type === "invalid_request_error");
  const bob = new Anthropic({ apiKey: KEY_BOB, baseURL: url, maxRetries: 0 });
  await raises("anthropic model not allowed to the key is PermissionDeniedError", () => bob.messages.create({ model: "claude", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    e => e instanceof Anthropic.PermissionDeniedError && e.status === 403);
  await raises("anthropic upstream 429 is RateLimitError", () => anthropic.messages.create({ model: "limited", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    e => e instanceof Anthropic.RateLimitError && Number(e.headers.get("retry-after")) >= 1);
});

// ------------------------------------------------- a client that aborts
async function closedEarly(model) {
  for (let i = 0; i < 100; i++) {
    const log = await (await fetch(mockUrl + "/_mock/requests")).json();
    const e = log.filter(x => x.model === model);
    if (e.length && e[e.length - 1].closed_early) return e[e.length - 1];
    await new Promise(r => setTimeout(r, 100));
  }
  return null;
}
await step("openai stream aborted by the client", async () => {
  const ac = new AbortController();
  const s = await openai.chat.completions.create({ model: "slow", stream: true,
    messages: [{ role: "user", content: "one two three four five six seven eight nine ten" }] }, { signal: ac.signal });
  let pieces = 0;
  try { for await (const c of s) { if (c.choices[0]?.delta?.content) pieces++; if (pieces === 2) ac.abort(); } }
  catch (e) { /* the abort */ }
  check(pieces === 2, "openai stream: two pieces, then abort", pieces);
  const e = await closedEarly("gpt-4o");
  check(e !== null, "the mock saw the upstream connection closed (openai)", e);
});
await step("anthropic stream aborted by the client", async () => {
  const s = anthropic.messages.stream({ model: "slowclaude", max_tokens: 100,
    messages: [{ role: "user", content: "one two three four five six seven eight nine ten" }] });
  let pieces = 0;
  s.on("text", () => { pieces++; if (pieces === 2) s.abort(); });
  try { await s.finalMessage(); } catch (e) { /* the abort */ }
  check(pieces >= 2, "anthropic stream: pieces, then abort", pieces);
  const e = await closedEarly("claude-3-opus-latest");
  check(e !== null, "the mock saw the upstream connection closed (anthropic)", e);
});

console.log(`1..${n}`);
if (failed) { console.log(`# ${failed} failed`); process.exit(1); }
