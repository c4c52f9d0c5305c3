// Live updates with reconnect. Server-Sent Events are read with fetch (not EventSource) so
// the token travels in the Authorization header, never in a URL that logs keep. Both
// helpers retry with capped exponential backoff and report their state to the screen.

import { socketToken } from './api.js';

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

export function sse(api, path, { onEvent, onState = () => {}, onResync = () => {} }) {
  let stopped = false;
  let controller = null;
  let delay = MIN_DELAY_MS;

  async function connectOnce() {
    controller = new AbortController();
    onState('connecting');
    const response = await api.request('GET', path, {
      raw: true,
      signal: controller.signal,
      headers: { accept: 'text/event-stream' },
    });
    onState('open');
    delay = MIN_DELAY_MS;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let type = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue; // a keep-alive comment
          if (line.startsWith('event:')) type = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (type === 'resync') onResync();
        else if (data.length) {
          try {
            onEvent(type, JSON.parse(data.join('\n')));
          } catch {
            /* a malformed event is skipped, the stream goes on */
          }
        }
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await connectOnce();
      } catch (error) {
        if (stopped || error.name === 'AbortError') break;
        if (error.reason === 'session' || error.reason === 'forbidden') {
          onState('closed', error);
          return;
        }
      }
      if (stopped) break;
      onState('closed');
      onResync(); // whatever happened while disconnected is re-read
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(MAX_DELAY_MS, delay * 2);
    }
  })();

  return {
    close() {
      stopped = true;
      controller?.abort();
    },
  };
}

// A WebSocket that reconnects; messages are JSON. The browser cannot set headers on a
// WebSocket, so the token goes in the access_token query parameter the gateway reads.
export function socket(api, path, { onMessage, onState = () => {} }) {
  let stopped = false;
  let ws = null;
  let delay = MIN_DELAY_MS;
  const outbox = [];

  async function connect() {
    const token = await socketToken(api);
    if (stopped) return;
    const url = new URL(path, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (token) url.searchParams.set('access_token', token);
    onState('connecting');
    ws = new WebSocket(url);
    ws.onopen = () => {
      delay = MIN_DELAY_MS;
      onState('open');
      while (outbox.length) ws.send(outbox.shift());
    };
    ws.onmessage = (event) => {
      try {
        onMessage(JSON.parse(event.data));
      } catch {
        /* not JSON: ignored */
      }
    };
    ws.onclose = () => {
      onState('closed');
      if (!stopped) setTimeout(connect, (delay = Math.min(MAX_DELAY_MS, delay * 2)));
    };
  }
  connect();
  return {
    send(message) {
      const text = JSON.stringify(message);
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
      else outbox.push(text);
    },
    close() {
      stopped = true;
      ws?.close();
    },
  };
}
