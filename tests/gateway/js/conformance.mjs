// Conformance of cellgate with the official `openai` client (pinned in package-lock.json):
// completions and chat, streamed and not, the model list, and the errors the client turns into
// its typed exceptions. maxRetries: 0, since the client retries 429 and 5xx by itself.
//
//   node conformance.mjs http://127.0.0.1:PORT/v1 sk-cell-...
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const model = 'cellhouse';
let checks = 0;

async function check(name, fn) {
  try {
    await fn();
    checks += 1;
    console.log('ok   ' + name);
  } catch (e) {
    console.log('FAIL ' + name + ': ' + (e && e.stack ? e.stack : e));
    process.exitCode = 1;
  }
}

async function expectError(cls, status, fn, param) {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.status, status);
    assert.equal(typeof e.error.message, 'string');
    if (param !== undefined) assert.equal(e.param, param);
    return;
  }
  assert.fail(`expected ${cls.name}`);
}

await check('models.list', async () => {
  const page = await client.models.list();
  assert.ok(page.data.length >= 1);
  assert.equal(page.data[0].id, model);
  assert.equal(page.data[0].object, 'model');
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
});

let plain = '';
await check('completions, not streamed', async () => {
  const r = await client.completions.create({ model, prompt: 'The little dog', max_tokens: 12, temperature: 0, seed: 3 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.model, model);
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  plain = r.choices[0].text;
  assert.ok(plain.length > 0);
});

await check('completions, streamed, equal to the same request not streamed', async () => {
  const stream = await client.completions.create({ model, prompt: 'The little dog', max_tokens: 12, temperature: 0, seed: 3, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, plain);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

await check('chat.completions, not streamed', async () => {
  const r = await client.chat.completions.create({ model, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }], max_completion_tokens: 10, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.completion_tokens <= 10);
});

await check('chat.completions, streamed with usage', async () => {
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let role = null;
  let content = '';
  let finish = null;
  let usage = null;
  let ids = new Set();
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(ids.size, 1);
  assert.equal(role, 'assistant');
  assert.ok(content.length > 0);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
});

await check('a bad key is an AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'sk-cell-0000000000000000-wrong', maxRetries: 0 });
  await expectError(OpenAI.AuthenticationError, 401, () => bad.models.list());
});

await check('an unknown model is a NotFoundError', async () => {
  await expectError(OpenAI.NotFoundError, 404, () => client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }), 'model');
});

await check('a bad parameter is a BadRequestError naming it', async () => {
  await expectError(OpenAI.BadRequestError, 400, () => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 5 }), 'temperature');
  await expectError(OpenAI.BadRequestError, 400, () => client.completions.create({ model, prompt: 'x', n: 2 }), 'n');
  await expectError(OpenAI.BadRequestError, 400, () => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], logprobs: true }), 'logprobs');
});

console.log(`${checks} checks passed`);
