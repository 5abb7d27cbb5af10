// Types for speko-realtime.js (the browser SDK served by speko_bridge at /sdk/speko-realtime.js).

/** The 201 body of POST /v1/sessions, passed to connect() as it is. */
export interface MintAnswer {
  sessionId: string;
  token: string;
  /** ISO-8601 UTC: the socket must be opened before this. */
  expiresAt: string;
  /** The WebSocket URL to open. */
  url: string;
  ttlSeconds?: number;
  provider?: "openai" | "google" | "xai";
  model?: string;
  inputSampleRate?: 16000 | 24000;
  outputSampleRate?: 16000 | 24000;
  turnDetection?: TurnDetection;
}

/** Who ends the user's turn (chosen at mint; docs/protocol.md section 2). */
export type TurnDetection =
  | { type: "manual" }
  | { type: "server"; silenceMs?: number; prefixMs?: number; sensitivity?: "low" | "medium" | "high" }
  | { type: "semantic"; eagerness?: "low" | "medium" | "high" | "auto" };

export interface AudioFrame {
  type: "audio";
  /** PCM16 LE mono at sampleRate, over an ArrayBuffer of its own. */
  pcm: Uint8Array;
  sampleRate: number;
  /** The same samples as an Int16Array view. */
  samples: Int16Array;
}
export interface TranscriptFrame { type: "transcript"; role: "user" | "assistant"; text: string; final: boolean }
export interface ToolCallFrame { type: "tool_call"; callId: string; name: string; arguments: string }
export interface UsageFrame { type: "usage"; inputAudioTokens: number; outputAudioTokens: number }
export interface ErrorFrame { type: "error"; code: string; message: string }
/** The last frame of every session, however it ended (sent by the bridge, or made by the SDK
 * when the socket ended without one: your own close, or 1006 when the connection dropped). */
export interface CloseFrame { type: "close"; code: number; reason: string }
/** server/semantic turns: the user started (the reply was cut: players made with createPlayer
 *  are flushed before handlers run) or stopped speaking. */
export interface SpeechFrame { type: "speech"; state: "started" | "stopped" }
/** The first frame on a socket that took the session back after a dropped connection. */
export interface ResumedFrame { type: "resumed"; sessionId: string }
/** Made by the SDK (connect with `reconnect`): the connection dropped; attempt `attempt`
 * starts in `delayMs`. `code` is how the socket ended (1006: no close frame). */
export interface ReconnectingFrame { type: "reconnecting"; attempt: number; delayMs: number; code: number }
/** Made by the SDK: the old session could not be resumed and getSession() gave a fresh one;
 * the conversation starts over. */
export interface RestartedFrame { type: "restarted"; sessionId: string | null }

export type RealtimeFrame =
  | AudioFrame | TranscriptFrame | ToolCallFrame | UsageFrame | ErrorFrame | CloseFrame | SpeechFrame | ResumedFrame
  | ReconnectingFrame | RestartedFrame;
export type FrameType = RealtimeFrame["type"];
export type FrameOf<T extends FrameType> = Extract<RealtimeFrame, { type: T }>;
export type Unsubscribe = () => void;

export declare const DEFAULT_TIMEOUT_MS: number;
export declare const DEFAULT_CONFIRM_MS: number;

export interface ReconnectPolicy {
  /** Resume attempts at most (default Infinity: until windowMs has passed). */
  attempts?: number;
  /** Backoff base and cap: each wait is uniform in [cap / 2, cap], cap = min(maxDelayMs, baseDelayMs * 2^attempt). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Give up resuming after this long (default 15000: the bridge's SPEKO_RESUME_SECONDS). */
  windowMs?: number;
}
export declare const DEFAULT_RECONNECT: Readonly<Required<ReconnectPolicy>>;
/** What a socket that ended with `code` calls for. */
export declare function reconnectPlan(code: number): "resume" | "restart" | "final";
export declare function reconnectDelay(policy: Required<ReconnectPolicy>, attempt: number, random?: () => number): number;

export declare class SpekoError extends Error {
  /** The bridge's error code (token_used, invalid_token, token_expired, session_revoked,
   * origin_not_allowed, rate_limited, ...) or invalid_request, timeout, connection_failed. */
  readonly code: string;
  /** The socket's close code, when it got that far. */
  readonly closeCode: number | null;
  constructor(code: string, message: string, closeCode?: number | null);
}

export interface ConnectOptions {
  /** Milliseconds until connect() rejects with code "timeout" (default DEFAULT_TIMEOUT_MS). */
  timeout?: number;
  /** Milliseconds an open socket must go unrefused before connect() resolves. */
  confirmMs?: number;
  /** Survive a dropped connection: true for DEFAULT_RECONNECT, or a policy (default false). */
  reconnect?: boolean | ReconnectPolicy;
  /** A fresh mint answer when the session cannot be resumed (session_elsewhere, 1001 drain,
   * the window ran out); without it such an end is final. */
  getSession?: (() => Promise<MintAnswer>) | null;
}

export declare class RealtimeSession {
  readonly url: string;
  readonly sessionId: string | null;
  readonly expiresAt: string | null;
  readonly provider: string | null;
  readonly model: string | null;
  readonly inputSampleRate: number;
  readonly outputSampleRate: number;
  readonly turnDetection: TurnDetection;
  readonly isOpen: boolean;
  /** Set once the session has ended. */
  readonly closeCode: number | null;
  readonly closeReason: string;
  /** Resolves with how the session ended. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** True between a dropped socket and the next one (or the final close). */
  readonly reconnecting: boolean;
  /** Audio bytes dropped because they were sent while reconnecting. */
  readonly droppedAudioBytes: number;

  /** Every frame, to one handler. */
  on(handler: (frame: RealtimeFrame) => void): Unsubscribe;
  /** Frames of one type ("*": every frame). */
  on<T extends FrameType>(type: T, handler: (frame: FrameOf<T>) => void): Unsubscribe;
  on(type: "*", handler: (frame: RealtimeFrame) => void): Unsubscribe;
  /** PCM16 LE mono at inputSampleRate; false if the socket is not open (dropped while reconnecting). */
  sendAudio(pcm: Uint8Array | Int16Array | ArrayBuffer): boolean;
  commit(): boolean;
  /** Cancel the assistant's reply; flushes players made with createPlayer(this session). */
  interrupt(): boolean;
  /** A typed user turn, in any turn mode: echoed as a final user transcript, then answered. */
  sendText(text: string): boolean;
  sendToolResult(callId: string, output: string | object): boolean;
  /** Idempotent; resolves after the close handshake. */
  close(code?: number, reason?: string): Promise<{ code: number; reason: string }>;
}

export declare function connect(answer: MintAnswer, options?: ConnectOptions): Promise<RealtimeSession>;

export interface CaptureOptions {
  /** Default: session.inputSampleRate. */
  sampleRate?: number;
  /** Start sending at once (default true). */
  live?: boolean;
  /** A stream of your own instead of getUserMedia(). */
  stream?: MediaStream | null;
  constraints?: MediaTrackConstraints;
}

export interface Capture {
  readonly sampleRate: number;
  live: boolean;
  readonly chunksSent: number;
  readonly bytesSent: number;
  resume(): Promise<void>;
  pause(): void;
  stop(): Promise<void>;
}

export declare function startCapture(session: RealtimeSession, options?: CaptureOptions): Promise<Capture>;

export interface PlayerOptions {
  /** Default: session.outputSampleRate. */
  sampleRate?: number;
  /** Seconds between the first frame's arrival and its playback (default 0.05). */
  leadSeconds?: number;
  context?: AudioContext | null;
}

export interface Player {
  readonly context: AudioContext;
  readonly framesIn: number;
  readonly samplesIn: number;
  readonly samplesPlayed: number;
  readonly bufferedSeconds: number;
  play(frame: AudioFrame | Uint8Array | Int16Array, sampleRate?: number): void;
  flush(): void;
  close(): Promise<void>;
}

export declare function createPlayer(session?: RealtimeSession | null, options?: PlayerOptions): Player;
