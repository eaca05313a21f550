// The admin API from the browser: JSON requests, the admin token, and the
// change feed followed as a stream.
//
// The token lives in sessionStorage (this tab only) and goes out as an
// Authorization header, never in an address. EventSource cannot send that
// header, so the feed is read with fetch and parsed here.

const tokenKey = 'nouvelhook.adminToken';

/** APIError is a non-2xx answer: its status and the API's message. */
export class APIError extends Error {
  constructor(status, message) {
    super(message || 'HTTP ' + status);
    this.status = status;
  }
}

let asker = async () => { throw new APIError(401, 'the admin API needs a token'); };
let asking = null;

/**
 * onTokenNeeded sets what asks the person for the token: fn(wrong) returns
 * a promise of the token typed; wrong is true when the last one given was
 * refused.
 */
export function onTokenNeeded(fn) {
  asker = fn;
}

function stored() {
  try {
    return sessionStorage.getItem(tokenKey);
  } catch {
    return null;
  }
}

// needToken waits for a token to use instead of sent (null when none was
// sent). Requests refused together share one question.
function needToken(sent) {
  const now = stored();
  if (now && now !== sent) return Promise.resolve(); // another request already got a new one
  if (!asking) {
    const wrong = sent !== null;
    if (wrong) sessionStorage.removeItem(tokenKey);
    asking = asker(wrong).then((t) => {
      sessionStorage.setItem(tokenKey, t);
      asking = null;
    });
  }
  return asking;
}

/**
 * send is fetch against the admin API with the token. A 401 asks for the
 * token and sends the request again with it, until one is accepted.
 */
export async function send(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers);
    const sent = stored();
    if (sent) headers.set('Authorization', 'Bearer ' + sent);
    const resp = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
    if (resp.status !== 401) return resp;
    await resp.body?.cancel();
    await needToken(sent);
  }
}

async function fail(resp) {
  let msg = '';
  try {
    const body = await resp.json();
    msg = body.error || body.message || '';
  } catch {
    // not JSON: the status says it
  }
  return new APIError(resp.status, msg || resp.status + ' ' + resp.statusText);
}

/** get answers a GET's JSON, or throws an APIError. */
export async function get(path, init) {
  const resp = await send(path, init);
  if (!resp.ok) throw await fail(resp);
  return resp.json();
}

/** post sends body as JSON and answers the JSON answer, or throws an APIError. */
export async function post(path, body) {
  const resp = await send(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  if (!resp.ok) throw await fail(resp);
  return resp.json();
}

/** text answers a GET's body as text, or throws an APIError. */
export async function text(path) {
  const resp = await send(path);
  if (!resp.ok) throw await fail(resp);
  return resp.text();
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// frame parses one server-sent event block into {id, event, data}.
function frame(block) {
  const ev = { id: '', event: 'message', data: [] };
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') ev.data.push(value);
    else if (field === 'id') ev.id = value;
    else if (field === 'event') ev.event = value;
  }
  return ev.data.length ? { ...ev, data: ev.data.join('\n') } : null;
}

/**
 * follow reads the change feed from after on, calling onJob(job) for each
 * job that ends, in seq order, and onState('live' | 'reconnecting' |
 * 'error', detail) as the stream comes and goes. It reconnects by itself
 * from the last seq seen, backing off up to 10 s, until signal aborts.
 */
export async function follow(after, onJob, onState, signal) {
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const resp = await send('/v1/events?after=' + encodeURIComponent(after), {
        headers: { Accept: 'text/event-stream' },
        signal,
      });
      if (!resp.ok) throw await fail(resp);
      onState('live');
      backoff = 500;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const ev = frame(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
          if (!ev || ev.event !== 'job') continue;
          const job = JSON.parse(ev.data);
          const seq = Number(ev.id) || job.seq;
          if (seq > after) after = seq;
          onJob(job);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      onState('error', err);
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 10000);
  }
}
