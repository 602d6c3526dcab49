/**
 * The lease function's IAM: GetObject, PutObject and DeleteObject on the lease objects of the
 * working bucket, DescribeExecution on the state machine's executions, and nothing else (least
 * privilege); no other function may touch the leases beyond what its bucket grants already give.
 */
import { describe, expect, it } from 'vitest';
import { asArray, policyStatements, synthStack } from './fixture.ts';

const { template } = synthStack();
const statements = policyStatements(template);
const leaseStatements = statements.filter(({ owner }) => /^HandlersLeaseRole/.test(owner));

describe('the lease function', () => {
  it('may read, write and delete the lease objects of the working bucket, and nothing else of S3', () => {
    const s3 = leaseStatements.filter(({ statement }) => asArray(statement.Action).some((a) => a.startsWith('s3:')));

    expect(s3).toHaveLength(1);
    const [{ statement }] = s3 as [(typeof s3)[number]];
    expect(asArray(statement.Action).sort()).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:PutObject']);
    const resources = asArray(statement.Resource as unknown[]);
    expect(resources).toHaveLength(1);
    const resource = JSON.stringify(resources[0]);
    expect(resource).toMatch(/StorageWorking/);
    expect(resource).toContain('/leases/*');
  });

  it("may ask about the pipeline state machine's executions only, and nothing else besides its logs", () => {
    const states = leaseStatements.filter(({ statement }) =>
      asArray(statement.Action).some((a) => a.startsWith('states:')),
    );
    expect(states).toHaveLength(1);
    const [{ statement }] = states as [(typeof states)[number]];
    expect(asArray(statement.Action)).toEqual(['states:DescribeExecution']);
    expect(JSON.stringify(statement.Resource)).toMatch(/:execution:Test-pipeline:\*"/);

    const other = leaseStatements
      .flatMap(({ statement }) => asArray(statement.Action))
      .filter((action) => !/^(s3|logs|states):/.test(action));
    expect(other).toEqual([]);
  });
});
