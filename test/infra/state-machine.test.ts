import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { aslPlaceholders } from '../../infra/asl.ts';
import { ASL_FILE, asArray, policyStatements, type Resources, synthStack } from './fixture.ts';

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
const machineRoleId = (machine.Properties.RoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
const statements = policyStatements(template);
const machineStatements = statements.filter((s) => s.owner.startsWith(machineRoleId.replace(/[0-9A-F]{8}$/, '')));

describe('the ASL file', () => {
  it('is valid Amazon States Language', () => {
    const result = aslValidator(JSON.parse(asl));
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
      AthenaWorkGroup: 'Test',
      GlueDatabase: 'test',
      FailureTopicArn: { Ref: expect.stringMatching(/^FailuresTopic/) },
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
    expect(asArray(find('InvokeHandlers')?.Resource as unknown[])).toHaveLength(10);
    expect(json('StartChildExecutions')).toContain(':stateMachine:Test-pipeline"');
    expect(json('ManageChildExecutions')).toContain(':execution:Test-pipeline/*"');
    expect(json('ReadManifests')).toContain('/manifests/*');
    expect(json('RunQueries')).toContain(':workgroup/Test"');
    expect(json('ManageTables')).toContain(':table/test/*"');
    expect(json('NotifyFailure')).toMatch(/"Ref":"FailuresTopic/);
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
