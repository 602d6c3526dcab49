/**
 * Athena's API (AWS JSON 1.1, `X-Amz-Target: AmazonAthena.<Operation>`) on the embedded runtime's
 * endpoint, over the local Athena registry (`athena.ts`) and so over the local warehouse:
 * StartQueryExecution, GetQueryExecution, BatchGetQueryExecution, GetQueryResults,
 * StopQueryExecution and ListQueryExecutions, with Athena's shapes, so that
 * `@aws-sdk/client-athena` and `aws athena ... --endpoint-url http://127.0.0.1:4577` work as on AWS.
 * https://docs.aws.amazon.com/athena/latest/APIReference/API_Operations.html
 *
 * The stack's workgroup and Glue database are both named `sluice` locally: a request naming another
 * workgroup, database or catalog fails with InvalidRequestException naming the one served. A request
 * that names none gets them (the registry's default workgroup). Errors are Athena's:
 * InvalidRequestException (400) for a bad request, an unknown query id, or the results of a query
 * that has not SUCCEEDED; UnknownOperationException for an operation not served here.
 * Timestamps are epoch seconds, as AWS JSON sends them.
 */
import {
  AthenaInvalidRequestError,
  type GetQueryResultsInput,
  type ListQueryExecutionsInput,
  type QueryExecution,
  type StartQueryExecutionInput,
} from './athena.ts';
import { AwsApiError, type AwsJsonHandler } from './aws-api.ts';
import { LOCAL_ATHENA_DATABASE, LOCAL_ATHENA_WORKGROUP } from './environment.ts';
import type { LocalRuntime } from './local-runtime.ts';

/** The data catalog Athena queries Glue tables through. */
const CATALOG = 'AwsDataCatalog';

const invalid = (message: string) => new AwsApiError('InvalidRequestException', message, 400);

const optionalString = (input: Record<string, unknown>, name: string): string | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`${name} must be a string.`);
  return value;
};

const optionalInteger = (input: Record<string, unknown>, name: string): number | undefined => {
  const value = input[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalid(`${name} must be an integer.`);
  return value;
};

function checkWorkGroup(workGroup: string | undefined): void {
  if (workGroup !== undefined && workGroup !== LOCAL_ATHENA_WORKGROUP) {
    throw invalid(
      `WorkGroup ${workGroup} is not found. The embedded runtime serves the workgroup '${LOCAL_ATHENA_WORKGROUP}' (the stack's workgroup, as named locally).`,
    );
  }
}

function checkContext(input: Record<string, unknown>): StartQueryExecutionInput['QueryExecutionContext'] {
  const context = input.QueryExecutionContext;
  if (context === undefined || context === null) return undefined;
  if (typeof context !== 'object' || Array.isArray(context)) throw invalid('QueryExecutionContext must be an object.');
  const database = optionalString(context as Record<string, unknown>, 'Database');
  const catalog = optionalString(context as Record<string, unknown>, 'Catalog');
  if (database !== undefined && database.toLowerCase() !== LOCAL_ATHENA_DATABASE) {
    throw invalid(
      `Database ${database} is not found. The embedded runtime serves the database '${LOCAL_ATHENA_DATABASE}' (the stack's Glue database, as named locally).`,
    );
  }
  if (catalog !== undefined && catalog.toLowerCase() !== CATALOG.toLowerCase()) {
    throw invalid(`Catalog ${catalog} is not found. The embedded runtime serves the catalog '${CATALOG}'.`);
  }
  return {
    ...(database !== undefined ? { Database: database } : {}),
    ...(catalog !== undefined ? { Catalog: catalog } : {}),
  };
}

const epochSeconds = (iso: string | undefined) => (iso === undefined ? undefined : Date.parse(iso) / 1000);

/** A QueryExecution as AWS JSON sends it: the registry's ISO timestamps as epoch seconds. */
function wireExecution(execution: QueryExecution): Record<string, unknown> {
  const { SubmissionDateTime, CompletionDateTime, ...status } = execution.Status;
  return {
    ...execution,
    Status: {
      ...status,
      SubmissionDateTime: epochSeconds(SubmissionDateTime),
      ...(CompletionDateTime !== undefined ? { CompletionDateTime: epochSeconds(CompletionDateTime) } : {}),
    },
  };
}

/** The Athena operations of the embedded runtime, for `awsJsonApis` under the prefix `AmazonAthena`. */
export function athenaApi(runtime: Pick<LocalRuntime, 'athena'>): AwsJsonHandler {
  const { athena } = runtime;
  const queryId = (input: Record<string, unknown>) => {
    const id = optionalString(input, 'QueryExecutionId');
    if (id === undefined || id === '') throw invalid('QueryExecutionId is required.');
    return id;
  };

  const operations: Record<string, (input: Record<string, unknown>) => Promise<unknown>> = {
    async StartQueryExecution(input) {
      const queryString = optionalString(input, 'QueryString');
      if (queryString === undefined || queryString.trim() === '') throw invalid('QueryString is required.');
      const workGroup = optionalString(input, 'WorkGroup');
      checkWorkGroup(workGroup);
      const context = checkContext(input);
      const token = optionalString(input, 'ClientRequestToken');
      return athena.startQueryExecution({
        QueryString: queryString,
        ...(workGroup !== undefined ? { WorkGroup: workGroup } : {}),
        ...(context !== undefined ? { QueryExecutionContext: context } : {}),
        ...(token !== undefined ? { ClientRequestToken: token } : {}),
      });
    },
    async GetQueryExecution(input) {
      const { QueryExecution } = await athena.getQueryExecution({ QueryExecutionId: queryId(input) });
      return { QueryExecution: wireExecution(QueryExecution) };
    },
    async BatchGetQueryExecution(input) {
      const ids = input.QueryExecutionIds;
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > 50 || ids.some((id) => typeof id !== 'string')) {
        throw invalid('QueryExecutionIds must list 1 to 50 query execution ids.');
      }
      const found: Record<string, unknown>[] = [];
      const missing: { QueryExecutionId: string; ErrorCode: string; ErrorMessage: string }[] = [];
      for (const id of ids as string[]) {
        try {
          found.push(wireExecution((await athena.getQueryExecution({ QueryExecutionId: id })).QueryExecution));
        } catch (error) {
          if (!(error instanceof AthenaInvalidRequestError)) throw error;
          missing.push({ QueryExecutionId: id, ErrorCode: 'INVALID_INPUT', ErrorMessage: error.message });
        }
      }
      return { QueryExecutions: found, UnprocessedQueryExecutionIds: missing };
    },
    async GetQueryResults(input) {
      const max = optionalInteger(input, 'MaxResults');
      const token = optionalString(input, 'NextToken');
      const request: GetQueryResultsInput = {
        QueryExecutionId: queryId(input),
        ...(max !== undefined ? { MaxResults: max } : {}),
        ...(token !== undefined ? { NextToken: token } : {}),
      };
      return athena.getQueryResults(request);
    },
    async StopQueryExecution(input) {
      return athena.stopQueryExecution({ QueryExecutionId: queryId(input) });
    },
    async ListQueryExecutions(input) {
      const workGroup = optionalString(input, 'WorkGroup');
      checkWorkGroup(workGroup);
      const max = optionalInteger(input, 'MaxResults');
      const token = optionalString(input, 'NextToken');
      const request: ListQueryExecutionsInput = {
        ...(workGroup !== undefined ? { WorkGroup: workGroup } : {}),
        ...(max !== undefined ? { MaxResults: max } : {}),
        ...(token !== undefined ? { NextToken: token } : {}),
      };
      return athena.listQueryExecutions(request);
    },
  };

  return async (operation, input) => {
    const run = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
    if (!run) {
      throw new AwsApiError(
        'UnknownOperationException',
        `The embedded runtime does not serve the Athena operation ${operation} (it serves ${Object.keys(operations).join(', ')}).`,
      );
    }
    try {
      return await run(input);
    } catch (error) {
      if (error instanceof AthenaInvalidRequestError) throw invalid(error.message);
      throw error;
    }
  };
}
