/**
 * Plain failure messages. What a user reads when a run fails (the notification, `sluice runs`,
 * the run record's `message`) is one or two sentences: which input, what was wrong, where, and
 * what to do. Error types, request ids and the failed chunks go to the run record's details;
 * stack traces and absolute paths go nowhere a user looks, and raw input bytes only as a short,
 * escaped excerpt. Everything here is bounded: a message is at most {@link MAX_MESSAGE_CHARS}
 * characters whatever it is built from (a gzip bomb's NULs, a 5 MB line, a huge header), so no
 * failure can push the state machine's failure path past Step Functions' 256 KiB limit.
 */
import type { ChunkFailure, FailedPart, FailureDetails } from '../contracts.ts';
import { SluiceError } from '../errors.ts';

/** The longest message a user is shown. */
export const MAX_MESSAGE_CHARS = 1000;
/** The longest excerpt of raw input a message may quote. */
export const MAX_EXCERPT_CHARS = 60;

/** C0 and C1 controls, DEL, and the two Unicode line separators. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/** A control character repeated: shown once with its count (a gzip bomb's NULs). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL_RUN = /([\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f])\1{3,}/g;
/** Absolute file paths under the usual roots (Lambda's /var/task and /tmp, a developer's checkout): shown by their file name. */
const ABSOLUTE_PATH =
  /(?<![\w.:/-])\/(?:tmp|var|home|work|usr|opt|root|private|Users|mnt|srv|proc|etc|run|builds?)(?:\/[^\s'"`()<>,;:]+)+/g;

const hex = (code: number) =>
  code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;

function escapeControl(char: string): string {
  if (char === '\n') return '\\n';
  if (char === '\r') return '\\r';
  if (char === '\t') return '\\t';
  return hex(char.charCodeAt(0));
}

/** Cuts `text` to at most `max` characters, at a word boundary where one is near, with an ellipsis. */
export function cutAtWord(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 1) return '…'.slice(0, max);
  let cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  if (space >= Math.floor(max * 0.6)) cut = cut.slice(0, space);
  // Never end inside an escape sequence (`\x0`, `\u20`) or a surrogate pair.
  cut = cut.replace(/\\(?:x[0-9a-f]?|u[0-9a-f]{0,3})?$/, '').replace(/[\ud800-\udbff]$/, '');
  return `${cut.replace(/[\s,;:(-]+$/, '')}…`;
}

/**
 * A message made safe to show: control characters escaped (a long run of one shown once with its
 * count), line breaks and tabs as spaces, absolute paths as file names, at most `max` characters.
 */
export function plainText(text: string, max: number = MAX_MESSAGE_CHARS): string {
  const runs = text.replace(CONTROL_RUN, (run, char: string) => `${escapeControl(char)} (×${run.length})`);
  // Enough to fill `max` after escaping; the rest is cut anyway.
  const head = runs.length > max * 8 ? runs.slice(0, max * 8) : runs;
  const spaced = head
    .replace(/[ \t]*(?:\r\n|\n|\r|\t)[ \t\r\n]*/g, ' ')
    .replace(CONTROL, escapeControl)
    .replace(ABSOLUTE_PATH, (path) => path.slice(path.lastIndexOf('/') + 1))
    .trim();
  return cutAtWord(spaced, max);
}

/** A short, quoted, fully escaped excerpt of raw input (quotes, backslashes and controls escaped). */
export function excerpt(raw: string | Uint8Array, max: number = MAX_EXCERPT_CHARS): string {
  const limit = max * 8;
  const truncated = raw.length > limit;
  const text =
    typeof raw === 'string'
      ? raw.slice(0, limit)
      : Buffer.from(raw.buffer, raw.byteOffset, Math.min(raw.length, limit)).toString('utf8');
  const escaped = text
    .replace(/["\\]/g, (c) => `\\${c}`)
    .replace(CONTROL_RUN, (run, char: string) => `${escapeControl(char)} (×${run.length}${truncated ? '+' : ''})`)
    .replace(CONTROL, escapeControl);
  const body = escaped.length > max ? cutAtWord(escaped, max) : truncated ? `${escaped}…` : escaped;
  return `"${body}"`;
}

/** The parts of a Lambda error cause (`{"errorType","errorMessage","trace"}`), or undefined for any other text. */
export function parseLambdaCause(cause: string | undefined): { errorType?: string; errorMessage: string } | undefined {
  if (!cause?.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(cause) as { errorType?: unknown; errorMessage?: unknown };
    if (typeof parsed.errorMessage !== 'string') return undefined;
    return {
      errorMessage: parsed.errorMessage,
      ...(typeof parsed.errorType === 'string' ? { errorType: parsed.errorType } : {}),
    };
  } catch {
    return undefined;
  }
}

/** A cause as a person reads it: a Lambda error's message rather than its JSON (and trace), made plain. */
export function readableCause(cause: string | null | undefined): string {
  const text = cause ?? '';
  const lambda = parseLambdaCause(text);
  if (lambda) return plainText(lambda.errorMessage);
  // A cause that ends with a Lambda error's JSON (a local Distributed Map's "First failure, item 0: ..."): its message.
  const at = text.indexOf('{"errorType"');
  const inner = at > 0 ? parseLambdaCause(text.slice(at)) : undefined;
  return plainText(inner ? `${text.slice(0, at)}${inner.errorMessage}` : text);
}

/** A cause of any JSON shape (Step Functions' event logs carry objects too) as one plain line for a log. */
export function causeLine(cause: unknown): string {
  const text = typeof cause === 'string' ? cause : cause === null || cause === undefined ? '' : JSON.stringify(cause);
  return readableCause(text).slice(0, 300);
}

const TOLERATED = 'States.ExceedToleratedFailureThreshold';

/** Ends a message with a full stop (messages often start with a key, so the first letter is left as it is). */
const sentence = (text: string) => {
  const trimmed = text.trim();
  if (trimmed === '') return '';
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
};

/**
 * The plain message of a failed execution from its error name and cause alone (what Step Functions
 * reports): a Lambda error's message, the first failure a local Distributed Map names, or a
 * sentence for the States.* errors. RecordFailure says more when the chunks left their errors.
 */
export function plainFailure(error: string | null | undefined, cause: string | null | undefined): string {
  const name = error ?? '';
  const text = cause ?? '';
  const lambda = parseLambdaCause(text);
  if (lambda) return sentence(plainText(lambda.errorMessage));
  if (name === TOLERATED) {
    const first = /First failure, item (\d+): ([\w.]+): ([\s\S]*)$/.exec(text);
    const counts = /(\d+) of (\d+) item\(s\) failed/.exec(text);
    const more =
      counts && Number(counts[1]) > 1 ? ` ${Number(counts[1]) - 1} more chunk(s) of ${counts[2]} failed too.` : '';
    if (first) return plainText(`${plainFailure(first[2], first[3])}${more}`);
    return "More chunks of the run failed than the pipeline tolerates (processing.toleratedFailurePercentage), so nothing was loaded; the failed chunks' errors are in the run record (runs/<pipeline>/<run>/run.json in the working bucket; sluice runs <run> locally).";
  }
  if (name === 'States.DataLimitExceeded') {
    return plainText(
      `The run stopped because a step's data passed Step Functions' 256 KiB limit; this is a bug in Sluice, not in your input: please report it with the run id. (${text})`,
    );
  }
  if (name === 'States.Timeout') {
    return 'The run took longer than its time limit and was stopped; run it again, or split the input into smaller files.';
  }
  if (name === 'Sluice.QueryFailed') {
    return plainText(
      `${sentence(text) || 'A warehouse query failed without a reason.'} A warehouse query of the run failed and the statements after it did not run; check the pipeline's SQL (transform, derived tables) and tables, then run it again.`,
    );
  }
  if (name === 'Sluice.CommitConflict') {
    return plainText(`A table commit kept conflicting with another run's, even after retries (${text}); run it again.`);
  }
  if (text.trim() !== '') return sentence(plainText(text));
  return name
    ? `The run failed with ${plainText(name, 100)} and no cause; see the execution's history.`
    : "The run failed without saying why; see the execution's history.";
}

/** The error type behind a state machine error: a Lambda error's `errorType`, else the error itself. */
function errorTypeOf(error: string | null | undefined, cause: string | null | undefined): string {
  return parseLambdaCause(cause ?? undefined)?.errorType ?? (error || 'Unknown');
}

/** `key (bytes a–b)` for the first part, and how many other files. */
function describeParts(parts: readonly FailedPart[]): string {
  const [first] = parts;
  if (!first) return 'an empty chunk';
  const keys = new Set(parts.map((p) => p.key));
  const others = keys.size - 1;
  return `${first.key} (bytes ${first.start}–${first.end})${others > 0 ? ` and ${others} more file(s)` : ''}`;
}

/** A chunk's error as a user reads it: its message, with the file and bytes when the message names no file. */
function chunkFailureMessage(failure: ChunkFailure): string {
  const named = failure.parts.some((p) => failure.message.includes(p.key));
  return plainText(
    named ? sentence(failure.message) : `In ${describeParts(failure.parts)}: ${sentence(failure.message)}`,
  );
}

/** At most this many chunks, and parts per chunk, in a run record's details: the record stays small. */
const MAX_DETAIL_CHUNKS = 10;
const MAX_DETAIL_PARTS = 5;

interface CaughtFailure {
  readonly error?: string;
  readonly cause?: string;
}

/**
 * The message and details of a failed run, from the caught error and the errors the failed chunks
 * left (chunks that later succeeded excluded). A Distributed Map's failure is told by its chunks'
 * errors: on AWS its own cause is generic.
 */
export function describeFailure(
  caught: CaughtFailure,
  chunkFailures: readonly ChunkFailure[],
): { message: string; details: FailureDetails } {
  const failures = [...chunkFailures].sort((a, b) => a.index - b.index);
  const errorType = errorTypeOf(caught.error, caught.cause);
  const [first] = failures;
  let message: string;
  if (first && (caught.error === TOLERATED || errorType === 'Sluice.VerifyError')) {
    const more = failures.length > 1 ? ` ${failures.length - 1} more chunk(s) failed too; see the run record.` : '';
    const chunk = chunkFailureMessage(first);
    message =
      caught.error === TOLERATED
        ? plainText(`${chunk}${more}`)
        : plainText(`${plainFailure(caught.error, caught.cause)} The first failed chunk: ${chunk}${more}`);
  } else {
    message = plainFailure(caught.error, caught.cause);
  }
  const shown = failures.slice(0, MAX_DETAIL_CHUNKS).map((f) => ({
    ...f,
    message: plainText(f.message),
    parts: f.parts.slice(0, MAX_DETAIL_PARTS),
  }));
  const type = first && caught.error === TOLERATED ? first.errorType : errorType;
  const details: FailureDetails = {
    errorType: type,
    ...(caught.error && caught.error !== type ? { stateError: caught.error } : {}),
    ...(first?.requestId && caught.error === TOLERATED ? { requestId: first.requestId } : {}),
    ...(shown.length > 0 ? { chunks: shown } : {}),
    ...(failures.length > shown.length ? { chunksFailed: failures.length } : {}),
  };
  return { message, details };
}

/**
 * The error a handler rethrows: the same error (its name is what Retry and Catch match), with a
 * plain, bounded message and a stack of that one line, so Lambda's error JSON (`errorType`,
 * `errorMessage`, `trace`) carries no frames and no absolute paths. The full stack goes to the
 * function's log on AWS (CloudWatch), and with SLUICE_DEBUG=1 locally.
 */
export function toPlainError(error: unknown): Error {
  const original = error instanceof Error ? error : new SluiceError(String(error));
  if (process.env.AWS_LAMBDA_FUNCTION_NAME || process.env.SLUICE_DEBUG) console.error(original.stack ?? original);
  const message = plainText(original.message || original.name);
  try {
    original.message = message;
    original.stack = `${original.name}: ${message}`;
  } catch {
    const copy = new SluiceError(message);
    copy.name = original.name;
    copy.stack = `${original.name}: ${message}`;
    return copy;
  }
  return original;
}

/** Wraps a handler so that whatever it throws reaches the state machine as {@link toPlainError} makes it. */
export function withPlainErrors<E, C, R>(
  handler: (event: E, context?: C) => Promise<R>,
): (event: E, context?: C) => Promise<R> {
  return async (event, context) => {
    try {
      return await handler(event, context);
    } catch (error) {
      throw toPlainError(error);
    }
  };
}
