// Types of flock.js, the dependency-free Flock client. API: docs/clients.md.

export declare const BINARY_SUBPROTOCOL: 'flock.binary.v2';

export type Metadata = Record<string, unknown>;

export interface Position {
  x: number;
  y: number;
}

export interface Member {
  userId: string;
  /** Merged metadata: the join's object with every presence patch applied. */
  metadata: Metadata;
  /** The last cursor (from the join:ack snapshot or a cursor:updated), null when none or removed. */
  cursor: (Position & { timestamp?: number }) | null;
}

/** idle: never connected; connecting; open; reconnecting: waiting out the backoff; closed: by the app, by `reconnect: false`, or replaced (4000). */
export type Status = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface Options {
  /** ws:// or wss:// address of the server. */
  url: string;
  /** Sent in every `join` (servers with FLOCK_API_KEYS). */
  apiKey?: string;
  /** 'binary' asks for the flock.binary.v2 subprotocol; JSON is used when the server declines. Default 'json'. */
  protocol?: 'json' | 'binary';
  /** A WebSocket constructor; default globalThis.WebSocket (pass the `ws` package's in Node < 22). */
  WebSocket?: unknown;
  /** A heartbeat per joined room this often. Default 10000. */
  heartbeatIntervalMs?: number;
  /** No heartbeat:ack this long after a heartbeat: the socket is dropped and reopened. Default 20000. */
  heartbeatTimeoutMs?: number;
  /** First reconnect delay; doubled each failed attempt. Default 1000. */
  backoffBaseMs?: number;
  /** Cap of the reconnect delay. Default 30000. */
  backoffMaxMs?: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1]. Default 0.5. */
  jitter?: number;
  /** At most one cursor:move per room this often; the last position always goes out. Default 50. */
  cursorThrottleMs?: number;
  /** Reopen a lost socket. Default true. */
  reconnect?: boolean;
}

export interface StatusEvent {
  status: Status;
  /** Failed attempts since the last healthy socket. */
  attempt: number;
  /** With 'open': the wire the socket speaks. */
  wire?: 'json' | 'binary';
  /** With 'reconnecting': how long until the next attempt. */
  delayMs?: number;
  /** With 'reconnecting' / 'closed': the WebSocket close code and reason. */
  code?: number;
  reason?: string;
}

export interface EventMap {
  status: StatusEvent;
  /** A join:ack: the room's view was (re)built from this snapshot. */
  joined: { roomId: string; members: Member[] };
  /** The member list changed (snapshot, join, leave, presence). */
  members: { roomId: string; members: Member[] };
  'member:joined': { roomId: string; member: Member };
  'member:left': { roomId: string; member: Member };
  /** position null: the cursor was removed (cursor:removed, or its user left). */
  cursor: { roomId: string; userId: string; position: Position | null; timestamp?: number };
  /** metadata: merged; patch: what was sent. */
  presence: { roomId: string; userId: string; metadata: Metadata; patch: Metadata };
  /** Server `error` messages (INVALID_API_KEY, ROOM_FULL, RATE_LIMITED, INVALID_MESSAGE, ...) and the client's own HEARTBEAT_TIMEOUT, CONNECT_FAILED. */
  error: { code: string; message: string; roomId?: string };
  /** Every server message, as a JSON client sees it (binary frames decoded). */
  message: { type: string; [field: string]: unknown };
}

export declare class FlockRoom {
  readonly client: FlockClient;
  readonly roomId: string;
  userId: string;
  /** Our own metadata, merged with every updatePresence; re-sent on re-join. */
  metadata: Metadata;
  /** Everyone else in the room. */
  readonly members: Map<string, Member>;
  /** The join:ack of the current socket has arrived. */
  readonly joined: boolean;
  /** Pointer position, normalised 0..1 by the app; throttled. */
  moveCursor(x: number, y: number): void;
  leaveCursor(): void;
  updatePresence(patch: Metadata): void;
  leave(): void;
  list(): Member[];
}

export declare class FlockClient {
  constructor(options: Options);
  readonly url: string;
  readonly options: Required<Omit<Options, 'url' | 'apiKey' | 'WebSocket'>>;
  readonly rooms: Map<string, FlockRoom>;
  readonly status: Status;
  /** What the current socket speaks. */
  readonly wire: 'json' | 'binary';
  readonly attempt: number;
  on<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): void;
  join(roomId: string, who: { userId: string; metadata?: Metadata }): FlockRoom;
  leave(roomId: string): void;
  room(roomId: string): FlockRoom | undefined;
  connect(): void;
  /** Leaves every room and closes; a later join() opens again. */
  close(): void;
}

export declare const DEFAULTS: Readonly<Required<Omit<Options, 'url' | 'apiKey' | 'WebSocket'>>>;

export declare function backoffDelay(
  attempt: number,
  opts: { backoffBaseMs: number; backoffMaxMs: number; jitter: number },
  random?: () => number,
): number;

/** A client message as a flock.binary.v2 frame. */
export declare function encodeClient(msg: { type: string; roomId: string; [field: string]: unknown }): Uint8Array;

/** The handles of one binary connection (docs/binary-codec.md). */
export declare class BinarySession {
  forget(roomId: string): void;
  /** The message a JSON client would have received; null for an unknown tag; throws on a frame it cannot read. */
  decode(bytes: Uint8Array): { type: string; [field: string]: unknown } | null;
}
