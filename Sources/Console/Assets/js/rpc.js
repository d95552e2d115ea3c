// The console's one connection to the gateway: JSON-RPC 2.0 over the `/ws` WebSocket, the same
// methods every other face calls. A credential is proved with `auth/authenticate` as the first
// frame (a browser cannot set an Authorization header on a WebSocket), so every request after it
// is decided and audited as the logged-in principal.
//
// The connection comes back by itself after a drop (with backoff): subscriptions are made again,
// and requests in flight when it dropped fail with a clear error rather than hang.

export class RPCError extends Error {
  constructor(error) {
    super(error.message || 'request failed');
    this.code = error.code;
    this.data = error.data;
  }
}

const CALL_TIMEOUT_MS = 30000;

export class Gateway {
  constructor(url = Gateway.defaultURL()) {
    this.url = url;
    this.token = null;
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map();          // id -> {resolve, reject, timer}
    this.subscriptions = new Map();    // local key -> {pattern, handler, subscriptionId}
    this.nextKey = 1;
    this.listeners = new Map();        // event name -> Set of functions
    this.state = 'closed';             // closed | connecting | open
    this.retryDelay = 500;
    this.wanted = false;
    this.opened = null;
    this.closed = false;
  }

  static defaultURL() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  }

  /// Resolves with the principal (`auth/whoami`) once connected and, with a token, authenticated;
  /// rejects with the gateway's refusal when the credential is not accepted.
  connect(token) {
    this.token = token || null;
    this.wanted = true;
    return this.open();
  }

  /// Ends the connection for good: later calls are refused rather than opening a new one.
  close() {
    this.wanted = false;
    this.token = null;
    this.closed = true;
    if (this.socket) this.socket.close(1000, 'logged out');
    this.failPending('the console logged out');
  }

  on(event, handler) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(handler);
    return () => this.listeners.get(event).delete(handler);
  }

  emit(event, value) {
    for (const handler of this.listeners.get(event) || []) {
      try { handler(value); } catch (error) { console.error(error); }
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  open() {
    if (this.opened) return this.opened;
    this.setState('connecting');
    this.opened = new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      let settled = false;
      socket.onopen = async () => {
        try {
          if (this.token) await this.send('auth/authenticate', { token: this.token });
          const principal = await this.send('auth/whoami');
          this.retryDelay = 500;
          this.setState('open');
          settled = true;
          resolve(principal);
          this.resubscribe();
        } catch (error) {
          settled = true;
          this.wanted = false;
          reject(error);
          // Said apart from a dropped connection: the credential itself is no longer accepted.
          this.emit('refused', error);
          socket.close(1000, 'not authenticated');
        }
      };
      socket.onmessage = (message) => this.receive(message.data);
      socket.onclose = (event) => {
        this.opened = null;
        this.socket = null;
        this.failPending(`the connection to the gateway closed${event.reason ? ': ' + event.reason : ''}`);
        this.setState('closed');
        if (!settled) {
          settled = true;
          reject(new RPCError({ code: -32000, message: event.reason || 'cannot reach the gateway' }));
        }
        if (this.wanted) {
          const delay = this.retryDelay;
          this.retryDelay = Math.min(this.retryDelay * 2, 10000);
          setTimeout(() => { if (this.wanted && !this.socket) this.open().catch(() => {}); }, delay);
        }
      };
    });
    return this.opened;
  }

  failPending(reason) {
    for (const [, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(new RPCError({ code: -32000, message: reason }));
    }
    this.pending.clear();
  }

  /// Sends on the open socket (used while opening, before `call` is allowed).
  send(method, params) {
    const id = this.nextId++;
    const message = { jsonrpc: '2.0', id, method };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RPCError({ code: -32000, message: `${method}: no answer within ${CALL_TIMEOUT_MS / 1000} s` }));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify(message));
    });
  }

  /// Calls a gateway method; resolves with its result, rejects with an RPCError.
  async call(method, params) {
    if (this.closed) throw new RPCError({ code: -32000, message: `${method}: the console logged out` });
    if (this.state !== 'open') await this.open();
    return this.send(method, params);
  }

  receive(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.id !== undefined && message.id !== null && !message.method) {
      const call = this.pending.get(message.id);
      if (!call) return;
      this.pending.delete(message.id);
      clearTimeout(call.timer);
      if (message.error) call.reject(new RPCError(message.error));
      else call.resolve(message.result);
      return;
    }
    if (message.method === 'notifications/events/message') {
      const params = message.params || {};
      for (const subscription of this.subscriptions.values()) {
        if (subscription.subscriptionId && subscription.subscriptionId === params.subscriptionId) {
          try { subscription.handler(params); } catch (error) { console.error(error); }
        }
      }
      return;
    }
    if (message.method) this.emit('notification', message);
  }

  /// Subscribes to the events of the topics `pattern` matches; `handler` gets each event's params
  /// ({topic, data, eventId, publishedAt, ...}). Returns a function that unsubscribes.
  subscribe(pattern, handler) {
    const key = this.nextKey++;
    const subscription = { pattern, handler, subscriptionId: null };
    this.subscriptions.set(key, subscription);
    if (this.state === 'open') this.subscribeOne(subscription);
    return () => {
      this.subscriptions.delete(key);
      if (subscription.subscriptionId && this.state === 'open') {
        this.send('events/unsubscribe', { subscriptionId: subscription.subscriptionId }).catch(() => {});
      }
    };
  }

  subscribeOne(subscription) {
    subscription.subscriptionId = null;
    this.send('events/subscribe', { pattern: subscription.pattern })
      .then((result) => {
        // Unsubscribed while the gateway was answering: end the subscription it just made, or
        // it would hold one of the connection's subscriptions for nothing.
        if (![...this.subscriptions.values()].includes(subscription)) {
          this.send('events/unsubscribe', { subscriptionId: result.subscriptionId }).catch(() => {});
          return;
        }
        subscription.subscriptionId = result.subscriptionId;
      })
      .catch((error) => {
        error.message = `events/subscribe ${subscription.pattern}: ${error.message}`;
        this.emit('error', error);
      });
  }

  resubscribe() {
    for (const subscription of this.subscriptions.values()) this.subscribeOne(subscription);
  }
}
