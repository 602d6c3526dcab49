/**
 * The AWS JSON protocols on the embedded runtime's endpoint, beside its S3 API: a request with an
 * `X-Amz-Target: <Service>.<Operation>` header (POST, JSON body) goes to the service's handler
 * instead of S3, so that the AWS SDKs and the AWS CLI talk to the embedded runtime exactly as to
 * AWS (`--endpoint-url http://127.0.0.1:4577`), with any credentials.
 * - Step Functions: AWS JSON 1.0, target prefix `AWSStepFunctions`
 *   (https://docs.aws.amazon.com/step-functions/latest/apireference/CommonParameters.html)
 * - Athena: AWS JSON 1.1, target prefix `AmazonAthena`
 *   (https://docs.aws.amazon.com/athena/latest/APIReference/CommonParameters.html)
 * Errors answer in AWS's JSON error shape, `{"__type": "<Code>", "message": "..."}` with the
 * HTTP status of the error, which the SDKs and the CLI read as the error's name and message.
 */
import type { IncomingMessage } from 'node:http';
import type { Middleware } from 's3rver';

/** One service's operations: the operation name (e.g. `StartExecution`) and the parsed JSON input. */
export type AwsJsonHandler = (operation: string, input: Record<string, unknown>) => Promise<unknown>;

/** An error as the service reports it: the code is `__type` (e.g. `ExecutionDoesNotExist`). */
export class AwsApiError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.name = code;
    this.code = code;
    this.status = status;
  }
}

/** The JSON protocol version each service speaks. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  AWSStepFunctions: 'application/x-amz-json-1.0',
  AmazonAthena: 'application/x-amz-json-1.1',
};

/** Largest request body read (Step Functions' own limit on an execution input is 256 KiB). */
const MAX_BODY_BYTES = 1024 * 1024;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new AwsApiError('ValidationException', 'the request body is too large', 413);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A middleware that answers AWS JSON requests for the services `handlers()` returns (looked up
 * per request, so the runtime can be created after the server starts); other requests go on to S3.
 */
export function awsJsonApis(handlers: () => Readonly<Record<string, AwsJsonHandler>>): Middleware {
  return async (ctx, next) => {
    const target = ctx.headers['x-amz-target'];
    if (ctx.method !== 'POST' || typeof target !== 'string' || !target.includes('.')) {
      await next();
      return;
    }
    const [service = '', operation = ''] = target.split('.', 2);
    const contentType = CONTENT_TYPES[service] ?? 'application/x-amz-json-1.1';
    const answer = (status: number, body: unknown) => {
      ctx.status = status;
      ctx.set('Content-Type', contentType);
      ctx.set('x-amzn-RequestId', crypto.randomUUID());
      ctx.body = JSON.stringify(body ?? {});
    };
    const handler = handlers()[service];
    if (!handler) {
      answer(400, { __type: 'UnknownOperationException', message: `the embedded runtime does not serve ${service}` });
      return;
    }
    try {
      const text = await readBody(ctx.req as IncomingMessage);
      let input: unknown;
      try {
        input = text.trim() === '' ? {} : JSON.parse(text);
      } catch {
        throw new AwsApiError('SerializationException', 'the request body is not JSON');
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new AwsApiError('SerializationException', 'the request body must be a JSON object');
      }
      answer(200, await handler(operation, input as Record<string, unknown>));
    } catch (error) {
      if (error instanceof AwsApiError) {
        answer(error.status, { __type: error.code, message: error.message });
      } else {
        answer(500, { __type: 'InternalServerException', message: (error as Error).message });
      }
    }
  };
}
