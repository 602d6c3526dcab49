import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { aslPlaceholders } from '../../infra/asl.ts';
import {
  ASL_FILE,
  asArray,
  policyStatements,
  type Resources,
  renderedDefinition,
  stateMachineOf,
  synthStack,
} from './fixture.ts';

type AslValidator = (
  definition: unknown,
  options?: { checkPaths?: boolean; checkArn?: boolean },
) => { isValid: boolean; errorsText: (separator?: string) => string };
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

const asl = readFileSync(ASL_FILE, 'utf8');
const { template } = synthStack();
const [[machineId, machine]] = Object.entries(
  template.findResources('AWS::StepFunctions::StateMachine') as Resources,
) as [[string, Resources[string]]];
const statements = policyStatements(template);
const machineStatementsOf = (t: typeof template) => {
  const roleId = (stateMachineOf(t).properties.RoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
  return policyStatements(t).filter((s) => s.owner.startsWith(roleId.replace(/[0-9A-F]{8}$/, '')));
};
const machineStatements = machineStatementsOf(template);
const localstack = synthStack({ target: 'localstack' }).template;

describe('the ASL file', () => {
  // asl-validator does not know `${ChildExecutionType}` as an ExecutionType: validate what CloudFormation creates.
  it.each([
    ['AWS', template],
    ['LocalStack', localstack],
  ])('is valid Amazon States Language once the %s template substitutes it', (_, t) => {
    const result = aslValidator(JSON.parse(renderedDefinition(t)));
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
  });
});

describe('the state machine', () => {
  it('is a STANDARD machine, traced, logging every event', () => {
    expect(machine.Properties).toMatchObject({
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true },
    });
  });

  it('deploys the ASL file as written: it is the only copy of the definition', () => {
    expect(machine.Properties.DefinitionString).toBe(asl);
  });

  it('substitutes exactly the placeholders of the ASL file', () => {
    const substitutions = machine.Properties.DefinitionSubstitutions as Record<string, unknown>;
    expect(Object.keys(substitutions).sort()).toEqual(aslPlaceholders(asl));
    let rendered = machine.Properties.DefinitionString as string;
    for (const key of Object.keys(substitutions)) rendered = rendered.replaceAll(`\${${key}}`, 'substituted');
    expect(rendered).not.toMatch(/\$\{[A-Za-z][A-Za-z0-9_]*\}/);
  });

  it('points the placeholders at the stack resources', () => {
    const substitutions = machine.Properties.DefinitionSubstitutions as Record<string, unknown>;
    const functionArn = (name: string) => ({
      'Fn::GetAtt': [expect.stringMatching(new RegExp(`^Handlers${name}[0-9A-F]{8}$`)), 'Arn'],
    });
    expect(substitutions).toEqual({
      PlanFunctionArn: functionArn('Plan'),
      WorkFunctionArn: functionArn('Work'),
      VerifyFunctionArn: functionArn('Verify'),
      FinishFunctionArn: functionArn('Finish'),
      RecordFailureFunctionArn: functionArn('RecordFailure'),
      LeaseFunctionArn: functionArn('Lease'),
      AthenaWorkGroup: { 'Fn::Join': ['', ['Test-', expect.anything()]] },
      GlueDatabase: { 'Fn::Join': ['', ['test_', expect.anything()]] },
      FailureTopicArn: { Ref: expect.stringMatching(/^FailuresTopic/) },
      WorkingBucketName: { Ref: expect.stringMatching(/^StorageWorking/) },
      ChildExecutionType: 'EXPRESS',
    });
  });

  it('is named from the stack, so that its own ARN can appear in its policy', () => {
    expect(machine.Properties.StateMachineName).toBe('Test-pipeline');
    expect(machineId).toMatch(/^Pipeline/);
  });
});

describe('IAM', () => {
  it('never grants a whole service or every action', () => {
    for (const { owner, statement } of statements) {
      for (const action of asArray(statement.Action)) {
        expect(action, `${owner} ${statement.Sid ?? ''}`).not.toBe('*');
        expect(action, `${owner} ${statement.Sid ?? ''}`).not.toMatch(/^[a-z0-9-]+:\*$/);
      }
    }
  });

  it('names every action of the state machine role in full', () => {
    expect(machineStatements.length).toBeGreaterThan(5);
    for (const { statement } of machineStatements) {
      for (const action of asArray(statement.Action)) expect(action).toMatch(/^[a-z0-9-]+:[A-Za-z]+$/);
    }
  });

  it('gives the state machine Resource "*" only for X-Ray and log delivery, which have no resource-level permissions', () => {
    const unscoped = machineStatements
      .filter(({ statement }) => asArray(statement.Resource).includes('*'))
      .flatMap(({ statement }) => asArray(statement.Action));
    expect(unscoped.length).toBeGreaterThan(0);
    for (const action of unscoped) expect(action).toMatch(/^(xray|logs):/);
  });

  it('scopes what the state machine may do to its own resources', () => {
    const find = (sid: string) => machineStatements.find(({ statement }) => statement.Sid === sid)?.statement;
    const json = (sid: string) => JSON.stringify(find(sid)?.Resource);
    expect(asArray(find('InvokeHandlers')?.Resource as unknown[])).toHaveLength(12);
    expect(json('StartChildExecutions')).toContain(':stateMachine:Test-pipeline"');
    expect(json('ManageChildExecutions')).toContain(':execution:Test-pipeline/*"');
    expect(json('ReadManifests')).toContain('/manifests/*');
    expect(json('RunQueries')).toContain(':workgroup/Test-",{"Fn::Select"');
    expect(json('ManageTables')).toContain(':table/test_",{"Fn::Select"');
    expect(json('NotifyFailure')).toMatch(/"Ref":"FailuresTopic/);
  });

  it('lets the Distributed Map describe and stop its children as the current Step Functions guide names them (execution:<name>:*)', () => {
    const statement = machineStatements.find(({ statement }) => statement.Sid === 'DescribeChildExecutions')?.statement;
    expect(asArray(statement?.Action ?? []).sort()).toEqual(['states:DescribeExecution', 'states:StopExecution']);
    expect(JSON.stringify(statement?.Resource)).toContain(':execution:Test-pipeline:*"');
  });

  it('lets the ResultWriter write map-results/ of the working bucket, and nothing else of it', () => {
    const statement = machineStatements.find(({ statement }) => statement.Sid === 'WriteMapResults')?.statement;
    expect(asArray(statement?.Action ?? []).sort()).toEqual([
      's3:AbortMultipartUpload',
      's3:GetObject',
      's3:ListMultipartUploadParts',
      's3:PutObject',
    ]);
    expect(statement?.Resource).toEqual({
      'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^StorageWorking/), 'Arn'] }, '/map-results/*']],
    });
  });

  it('runs Athena through the aws-sdk integration: start, get and stop a query, no .sync extras', () => {
    const statement = machineStatements.find(({ statement }) => statement.Sid === 'RunQueries')?.statement;
    expect(asArray(statement?.Action ?? []).sort()).toEqual([
      'athena:GetQueryExecution',
      'athena:StartQueryExecution',
      'athena:StopQueryExecution',
    ]);
    const tables = machineStatements.find(({ statement }) => statement.Sid === 'ManageTables')?.statement;
    // CREATE TABLE, ALTER TABLE ADD COLUMNS, MERGE, OPTIMIZE and VACUUM on Iceberg tables.
    expect(asArray(tables?.Action ?? [])).toEqual(
      expect.arrayContaining(['glue:GetTable', 'glue:UpdateTable', 'glue:CreateTable', 'glue:GetDatabase']),
    );
  });

  it('grants lakeformation:GetDataAccess only when the account uses Lake Formation', () => {
    const actions = (t: typeof template) =>
      machineStatementsOf(t).flatMap(({ statement }) => asArray(statement.Action));
    expect(actions(template)).not.toContain('lakeformation:GetDataAccess');
    const withLakeFormation = machineStatementsOf(synthStack({ lakeFormation: true }).template);
    const grant = withLakeFormation.find(({ statement }) => statement.Sid === 'LakeFormationDataAccess')?.statement;
    expect(grant?.Action).toBe('lakeformation:GetDataAccess');
  });

  it('lets the scheduler start the state machine and nothing else', () => {
    const schedulerStatements = statements.filter((s) => s.owner.startsWith('TriggersSchedulerRole'));
    expect(schedulerStatements.flatMap(({ statement }) => asArray(statement.Action)).sort()).toEqual([
      'sqs:SendMessage',
      'states:StartExecution',
    ]);
    const start = schedulerStatements.find(({ statement }) => statement.Action === 'states:StartExecution');
    expect(JSON.stringify(start?.statement.Resource)).toContain(':stateMachine:Test-pipeline"');
  });
});
