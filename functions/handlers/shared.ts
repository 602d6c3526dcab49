/**
 * What every handler is built from. Each handler module exports a factory,
 * `createHandler(deps)`, and `handler`, the one Lambda calls: the factory applied to the
 * function's environment (`fromEnvironment()`), built on the first call and kept for the
 * life of the execution environment (Lambda reuses it across invocations:
 * https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
 * The embedded runtime calls the factories with its own store, configuration and pipelines,
 * so nothing is read from `process.env` at import and one process can serve several endpoints.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { SFNClient } from '@aws-sdk/client-sfn';
import { type Config, readConfig } from '../config.ts';
import { createTelemetry, type Telemetry } from '../observability.ts';
import { loadPipelines, type Pipeline } from '../pipeline/definition.ts';
import { toPlainError } from '../run/failure-message.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { createS3Client, S3ObjectStore } from '../storage/s3-store.ts';

export interface HandlerDeps {
  readonly store: ObjectStore;
  readonly config: Config;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  /** The time (tests fix it). @default `new Date()` */
  readonly clock?: () => Date;
  /** The S3 client behind `store`, for what the store port does not do (the lease's conditional writes, `lease.ts`). */
  readonly s3?: S3Client;
  /**
   * Step Functions, for the lease to ask whether its holder's execution still runs (`lease.ts`,
   * which builds its own on Lambda, so that no other bundle carries the client).
   */
  readonly sfn?: SFNClient;
  /** JSON logs and EMF metrics (Lambda only: `fromEnvironment`). @default none: nothing is logged or measured */
  readonly telemetry?: Telemetry;
}

/** A handler as Lambda calls it: the event and the context (absent in some tests). */
export type Handler<E, R> = (event: E, context?: { readonly awsRequestId?: string }) => Promise<R>;

export const clockOf = (deps: HandlerDeps): (() => Date) => deps.clock ?? (() => new Date());

let environmentDeps: HandlerDeps | undefined;

/**
 * The dependencies of a Lambda function: configuration from its environment (set by the stack,
 * `infra/handlers.ts`), an S3 client for the current target, the bundled pipelines. Built on
 * the first call and kept; fails naming a missing setting. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` is
 * set) also the Powertools logger and metrics; the same code run elsewhere (a test) prints nothing more.
 */
export function fromEnvironment(): HandlerDeps {
  if (!environmentDeps) {
    const config = readConfig();
    const s3 = createS3Client();
    environmentDeps = {
      config,
      s3,
      store: new S3ObjectStore(s3),
      pipelines: loadPipelines(config.pipelinesDir),
      ...(process.env.AWS_LAMBDA_FUNCTION_NAME ? { telemetry: createTelemetry() } : {}),
    };
  }
  return environmentDeps;
}

/** Lambda's `handler`: the factory applied to `fromEnvironment()` on the first call. */
export function onFirstCall<E, R>(factory: (deps: HandlerDeps) => Handler<E, R>): Handler<E, R> {
  let built: Handler<E, R> | undefined;
  return async (event, context) => {
    if (!built) {
      try {
        built = factory(fromEnvironment());
      } catch (error) {
        // A missing setting or a bad pipeline file: the state machine sees it plain, as any handler error.
        throw toPlainError(error);
      }
    }
    return built(event, context);
  };
}
