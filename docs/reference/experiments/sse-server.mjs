// A fake upstream that plays exact byte sequences for POST /v1/responses and POST /v1/messages.
// Used by run.mjs (see there); listens on 127.0.0.1 only. Not part of the package, not run by jest or tsc.
//
// The case is chosen by the request's `model` field (the clients send it unchanged), so every SDK
// driver can hit every case with no SDK-specific hook. Each case is { status, headers, body } for a JSON
// answer, or { frames, tail } for a 200 text/event-stream answer, where tail is 'end' (clean res.end())
// or 'destroy' (socket destroyed mid-body). The server counts requests per case (retries show up there).
import http from 'node:http';

const MESSAGE = 'Violated guardrail policy';

// ---------------------------------------------------------------- Responses API (OpenAI)
const RESP_ID = 'resp_gw_1';
const ITEM_ID = 'msg_gw_1';
function responseObject(status, extra = {}) {
  return {
    id: RESP_ID, object: 'response', created_at: 1700000000, status, model: 'gw-model',
    output: [], error: null, incomplete_details: null, instructions: null, metadata: {},
    parallel_tool_calls: true, temperature: 1, tool_choice: 'auto', tools: [], top_p: 1,
    text: { format: { type: 'text' } }, usage: null, ...extra,
  };
}
const messageItem = (status, text) => ({
  id: ITEM_ID, type: 'message', status, role: 'assistant',
  content: text === undefined ? [] : [{ type: 'output_text', text, annotations: [] }],
});

// Everything a server sends up to two text deltas ("alpha ", "beta "), with sequence numbers.
function responsesPrefix({ deltas = ['alpha ', 'beta '], omit = {} } = {}) {
  let seq = 0;
  const ev = (type, body) => {
    const data = { type, ...(omit.sequence_number ? {} : { sequence_number: seq++ }), ...body };
    return { event: type, data };
  };
  const frames = [
    ev('response.created', { response: responseObject('in_progress') }),
    ev('response.in_progress', { response: responseObject('in_progress') }),
  ];
  if (deltas.length) {
    frames.push(
      ev('response.output_item.added', { output_index: 0, item: messageItem('in_progress') }),
      ev('response.content_part.added', { item_id: ITEM_ID, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
    );
    for (const delta of deltas) {
      const body = { item_id: ITEM_ID, output_index: 0, content_index: 0, delta, logprobs: [] };
      if (omit.indexes) { delete body.output_index; delete body.content_index; }
      frames.push(ev('response.output_text.delta', body));
    }
  }
  return { frames, next: () => seq++, ev };
}
function responsesCompletedTail(p, text) {
  const done = messageItem('completed', text);
  return [
    p.ev('response.output_text.done', { item_id: ITEM_ID, output_index: 0, content_index: 0, text, logprobs: [] }),
    p.ev('response.content_part.done', { item_id: ITEM_ID, output_index: 0, content_index: 0, part: done.content[0] }),
    p.ev('response.output_item.done', { output_index: 0, item: done }),
    p.ev('response.completed', { response: responseObject('completed', { output: [done], usage: { input_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 7 } }) }),
  ];
}
// The `error` event as OpenAI documents it (flat) and as OpenAI has also been seen to send it (nested).
const flatError = (p, code = 'guardrail_violation') => p.ev('error', { code, message: MESSAGE, param: null });
const nestedError = (p) => p.ev('error', { error: { type: 'guardrail_violation', code: '400', message: MESSAGE, param: null } });
// Both at once: the documented flat fields and the nested object (what the note recommends).
const hybridError = (p) => p.ev('error', { code: '400', message: MESSAGE, param: null, error: { type: 'guardrail_violation', code: '400', message: MESSAGE, param: null } });
const responseFailed = (p, text = 'alpha beta ', code = 'guardrail_violation') =>
  p.ev('response.failed', { response: responseObject('failed', { output: [messageItem('incomplete', text)], error: { code, message: MESSAGE } }) });

function responsesCase(id) {
  const p = responsesPrefix();
  switch (id) {
    case 'ok': return { frames: [...p.frames, ...responsesCompletedTail(p, 'alpha beta ')] };
    case 'a-flat': return { frames: [...p.frames, flatError(p)] };
    case 'a-flat-400': return { frames: [...p.frames, flatError(p, '400')] };
    case 'a-nested': return { frames: [...p.frames, nestedError(p)] };
    case 'a-hybrid': return { frames: [...p.frames, hybridError(p)] };
    case 'c-hybrid+failed': return { frames: [...p.frames, hybridError(p), responseFailed(p, 'alpha beta ', '400')] };
    case 'b-failed': return { frames: [...p.frames, responseFailed(p)] };
    case 'b-failed-400': return { frames: [...p.frames, responseFailed(p, 'alpha beta ', '400')] };
    case 'c-flat+failed': return { frames: [...p.frames, flatError(p), responseFailed(p)] };
    case 'c-nested+failed': return { frames: [...p.frames, nestedError(p), responseFailed(p)] };
    case 'c-failed+nested': return { frames: [...p.frames, responseFailed(p), nestedError(p)] };
    case 'd-cut-end': return { frames: p.frames };
    case 'd-cut-destroy': return { frames: p.frames, tail: 'destroy' };
    case 'f-nested-before-output': {
      const q = responsesPrefix({ deltas: [] });
      return { frames: [...q.frames, nestedError(q)] };
    }
    case 'f-failed-before-output': {
      const q = responsesPrefix({ deltas: [] });
      return { frames: [...q.frames, q.ev('response.failed', { response: responseObject('failed', { error: { code: 'guardrail_violation', message: MESSAGE } }) })] };
    }
    case 'g-no-seq-nested': {
      const q = responsesPrefix({ omit: { sequence_number: true } });
      return { frames: [...q.frames, nestedError(q)] };
    }
    case 'g-no-indexes': {
      const q = responsesPrefix({ omit: { indexes: true } });
      return { frames: [...q.frames, ...responsesCompletedTail(q, 'alpha beta ')] };
    }
    case 'g-no-created': {
      const q = responsesPrefix();
      return { frames: [...q.frames.slice(1), ...responsesCompletedTail(q, 'alpha beta ')] };
    }
    default: return undefined;
  }
}
const openaiErrorBody = (type, code) => ({ error: { message: MESSAGE, type, param: null, code } });

// ---------------------------------------------------------------- Messages API (Anthropic)
function messageStart(usage = true) {
  return {
    type: 'message_start',
    message: {
      id: 'msg_gw_1', type: 'message', role: 'assistant', model: 'gw-model', content: [],
      stop_reason: null, stop_sequence: null,
      ...(usage ? { usage: { input_tokens: 5, output_tokens: 1 } } : {}),
    },
  };
}
const m = (type, body) => ({ event: type, data: { type, ...body } });
function messagesPrefix({ usage = true } = {}) {
  return [
    { event: 'message_start', data: messageStart(usage) },
    m('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    { event: 'ping', data: { type: 'ping' } },
    m('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'alpha ' } }),
    m('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'beta ' } }),
  ];
}
const messagesTail = [
  m('content_block_stop', { index: 0 }),
  m('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } }),
  m('message_stop', {}),
];
const anthropicError = (type, message = MESSAGE) => ({ type: 'error', error: { type, message } });

function messagesCase(id) {
  switch (id) {
    case 'ok': return { frames: [...messagesPrefix(), ...messagesTail] };
    case 'a-overloaded': return { frames: [...messagesPrefix(), { event: 'error', data: anthropicError('overloaded_error', 'Overloaded') }] };
    case 'a-guardrail': return { frames: [...messagesPrefix(), { event: 'error', data: anthropicError('guardrail_violation') }] };
    case 'a-invalid': return { frames: [...messagesPrefix(), { event: 'error', data: anthropicError('invalid_request_error') }] };
    case 'a-no-event-line': return { frames: [...messagesPrefix(), { data: anthropicError('invalid_request_error') }] };
    case 'a-after-stop': return { frames: [...messagesPrefix(), ...messagesTail, { event: 'error', data: anthropicError('invalid_request_error') }] };
    case 'd-cut-end': return { frames: messagesPrefix() };
    case 'd-cut-destroy': return { frames: messagesPrefix(), tail: 'destroy' };
    case 'f-error-first': return { frames: [{ event: 'error', data: anthropicError('invalid_request_error') }] };
    case 'f-overloaded-first': return { frames: [{ event: 'error', data: anthropicError('overloaded_error', 'Overloaded') }] };
    case 'f-error-after-start': return { frames: [{ event: 'message_start', data: messageStart() }, { event: 'error', data: anthropicError('invalid_request_error') }] };
    case 'g-start-no-usage': return { frames: [...messagesPrefix({ usage: false }), ...messagesTail] };
    default: return undefined;
  }
}

// ---------------------------------------------------------------- JSON (pre-commit) cases, both protocols
const json = (status, body, headers = {}) => ({ status, body, headers });
function jsonCase(protocol, id) {
  const openai = protocol === 'responses';
  const shape = (otype, atype, code) => (openai ? openaiErrorBody(otype, code) : anthropicError(atype));
  const fast = { 'retry-after-ms': '5' }; // keeps SDK retries quick; both SDKs and the AI SDK read it
  switch (id) {
    case 'e-400': return json(400, shape('invalid_request_error', 'invalid_request_error', '400'));
    case 'e-400-guardrail': return json(400, shape('guardrail_violation', 'guardrail_violation', '400'));
    case 'e-429': return json(429, shape('rate_limit_exceeded', 'rate_limit_error', '429'), fast);
    case 'e-500': return json(500, shape('server_error', 'api_error', '500'), fast);
    case 'e-503': return json(503, shape('upstream_unavailable', 'overloaded_error', '503'), fast);
    case 'e-529': return json(529, shape('server_error', 'overloaded_error', '529'), fast);
    case 'h-500-no-retry': return json(500, shape('server_error', 'api_error', '500'), { 'x-should-retry': 'false' });
    case 'h-400-retry': return json(400, shape('invalid_request_error', 'invalid_request_error', '400'), { 'x-should-retry': 'true', 'retry-after-ms': '5' });
    case 'h-429-retry-after-1s': return json(429, shape('rate_limit_exceeded', 'rate_limit_error', '429'), { 'retry-after': '1' });
    default: return undefined;
  }
}

function sseBytes(frame) {
  return (frame.event ? `event: ${frame.event}\n` : '') + `data: ${JSON.stringify(frame.data)}\n\n`;
}

export function caseFor(protocol, id) {
  const j = jsonCase(protocol, id);
  if (j) return j;
  return protocol === 'responses' ? responsesCase(id) : messagesCase(id);
}

export async function startServer() {
  const hits = new Map();
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const protocol = req.url.startsWith('/v1/responses') ? 'responses' : req.url.startsWith('/v1/messages') ? 'messages' : undefined;
      let id;
      try { id = JSON.parse(raw).model; } catch { id = undefined; }
      const key = `${protocol}:${id}`;
      hits.set(key, (hits.get(key) ?? 0) + 1);
      const c = protocol && caseFor(protocol, id);
      if (!c) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":{"message":"no such case","type":"not_found"}}'); return; }
      if (c.status) {
        res.writeHead(c.status, { 'content-type': 'application/json', ...c.headers });
        res.end(JSON.stringify(c.body));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const f of c.frames) res.write(sseBytes(f));
      if (c.tail === 'destroy') setTimeout(() => res.socket.destroy(), 20);
      else setTimeout(() => res.end(), 20);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

// `node sse-server.mjs responses a-nested` prints the exact bytes of one case.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [protocol, id] = process.argv.slice(2);
  const c = caseFor(protocol, id);
  if (!c) { console.error('usage: node sse-server.mjs responses|messages CASE'); process.exit(1); }
  if (c.status) process.stdout.write(`HTTP ${c.status} ${JSON.stringify(c.headers)}\n${JSON.stringify(c.body)}\n`);
  else { for (const f of c.frames) process.stdout.write(sseBytes(f)); process.stdout.write(`(${c.tail ?? 'end'})\n`); }
}
