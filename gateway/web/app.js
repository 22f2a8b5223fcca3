// cellgate's chat page: talks to the gateway's own /v1 API with the key the user enters (kept
// in sessionStorage, so it leaves with the tab), streams replies over Server-Sent Events, shows
// reasoning text (reasoning_content) apart from the answer, and can stop a reply.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'cellgate.key';
let history = [];
let controller = null;

function headers() {
  return { 'Authorization': 'Bearer ' + sessionStorage.getItem(KEY), 'Content-Type': 'application/json' };
}

function status(text) { $('status').textContent = text; }

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  if (role === 'assistant') {
    const reasoning = document.createElement('div');
    reasoning.className = 'reasoning';
    const answer = document.createElement('div');
    answer.className = 'answer';
    div.append(reasoning, answer);
  } else {
    div.textContent = text;
  }
  $('log').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.error && body.error.message ? body.error.message : response.statusText;
  } catch (e) {
    return response.status + ' ' + response.statusText;
  }
}

async function loadModels() {
  const response = await fetch('/v1/models', { headers: headers() });
  if (!response.ok) throw new Error(await apiError(response));
  const list = await response.json();
  const select = $('model');
  select.replaceChildren();
  for (const m of list.data) {
    const option = document.createElement('option');
    option.value = m.id;
    option.textContent = m.id;
    select.append(option);
  }
  status(list.data.length + ' model(s). Ready.');
}

// Yields the JSON of each "data:" event of a Server-Sent Events body, until [DONE].
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(text) {
  history.push({ role: 'user', content: text });
  bubble('user', text);
  const reply = bubble('assistant');
  const answer = reply.querySelector('.answer');
  const reasoning = reply.querySelector('.reasoning');
  controller = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  const started = performance.now();
  let first = 0;
  let pieces = 0;
  let usage = null;
  let content = '';
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(), signal: controller.signal,
      body: JSON.stringify({ model: $('model').value, messages: history, stream: true,
                             stream_options: { include_usage: true } }),
    });
    if (!response.ok) throw new Error(await apiError(response));
    for await (const chunk of events(response.body)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.reasoning_content) reasoning.textContent += delta.reasoning_content;
        if (delta.content) {
          content += delta.content;
          answer.textContent = content;
        }
        if (delta.content || delta.reasoning_content) {
          pieces += 1;
          if (!first) first = performance.now();
          const seconds = (performance.now() - first) / 1000;
          if (seconds > 0) status('Generating… ' + (pieces / seconds).toFixed(1) + ' tokens/s');
        }
      }
      reply.scrollIntoView({ block: 'end' });
    }
    history.push({ role: 'assistant', content });
    const tokens = usage ? usage.completion_tokens : pieces;
    const seconds = first ? (performance.now() - first) / 1000 : 0;
    status(tokens + ' tokens, ' + (seconds > 0 ? (tokens / seconds).toFixed(1) : '–') +
           ' tokens/s, first token after ' + ((first || performance.now()) - started).toFixed(0) + ' ms');
  } catch (e) {
    if (e.name === 'AbortError') {
      history.push({ role: 'assistant', content });
      status('Stopped.');
    } else {
      history.pop();
      reply.remove();
      bubble('error', e.message);
      status('Error.');
    }
  } finally {
    controller = null;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('settings').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $('key').value.trim());
  $('key').value = '';
  loadModels().catch((e) => status('Could not list models: ' + e.message));
});

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || controller) return;
  if (!sessionStorage.getItem(KEY)) { status('Enter an API key first.'); return; }
  $('prompt').value = '';
  send(text);
});

$('prompt').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    $('composer').requestSubmit();
  }
});

$('stop').addEventListener('click', () => { if (controller) controller.abort(); });
$('clear').addEventListener('click', () => { history = []; $('log').replaceChildren(); status('New chat.'); });

if (sessionStorage.getItem(KEY)) {
  loadModels().catch((e) => status('Could not list models: ' + e.message));
}
