import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { HANDLERS, PLACEHOLDERS } from '../../functions/catalog.ts';
import { REPO_ROOT } from '../../infra/asl.ts';
import { SluiceStack, type SluiceStackProps } from '../../infra/stack.ts';
import { tempDir } from '../support/temp.ts';

const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };

/**
 * The stack as `cdk synth` builds it (same feature flags), without esbuild: the empty
 * `aws:cdk:bundling-stacks` makes NodejsFunction skip bundling.
 */
export function synthStack(props: SluiceStackProps = {}) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new SluiceStack(app, 'Test', { env: { region: 'us-east-1' }, ...props });
  return { app, stack, template: Template.fromStack(stack) };
}

export const ASL_FILE = join(REPO_ROOT, 'state-machines', 'pipeline.asl.json');
const ACCESS_LOGS = readFileSync(join(REPO_ROOT, 'pipelines', 'access-logs.yaml'), 'utf8');

/**
 * A pipelines folder with access-logs and a second pipeline, `clicks`: its own prefix,
 * `.tsv` files, its own tables, and no schedule.
 */
export function twoPipelinesDir(overrides: { clicksPrefix?: string; clicksTable?: string } = {}): string {
  const dir = tempDir('infra-');
  writeFileSync(join(dir, 'access-logs.yaml'), ACCESS_LOGS);
  const clicks = ACCESS_LOGS.replace('name: access-logs', 'name: clicks')
    .replace('prefix: access-logs/', `prefix: ${overrides.clicksPrefix ?? 'clicks/'}`)
    .replace('suffixes: [.csv, .csv.gz]', 'suffixes: [.csv]')
    .replace('name: access_logs', `name: ${overrides.clicksTable ?? 'clicks'}`)
    .replaceAll('FROM access_logs', `FROM ${overrides.clicksTable ?? 'clicks'}`)
    .replace('name: daily_traffic', 'name: daily_clicks')
    .replace(/\nschedule:[\s\S]*?(?=\nprocessing:)/, '\n');
  writeFileSync(join(dir, 'clicks.yaml'), clicks);
  return dir;
}

export type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

/** Every statement of every IAM policy (AWS::IAM::Policy and role inline policies), with its owner. */
export function policyStatements(template: Template): { owner: string; statement: Statement }[] {
  const out: { owner: string; statement: Statement }[] = [];
  const policies = template.findResources('AWS::IAM::Policy') as Resources;
  for (const [id, policy] of Object.entries(policies)) {
    const doc = policy.Properties.PolicyDocument as { Statement: Statement[] };
    for (const statement of doc.Statement) out.push({ owner: id, statement });
  }
  const roles = template.findResources('AWS::IAM::Role') as Resources;
  for (const [id, role] of Object.entries(roles)) {
    for (const p of (role.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]) {
      for (const statement of p.PolicyDocument.Statement) out.push({ owner: id, statement });
    }
  }
  return out;
}

export const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/** The template as JSON, written to a temporary file for the command-line checkers (cfn-lint). */
export function writeTemplate(template: Template, name: string): string {
  const file = join(tempDir('template-'), `${name}.template.json`);
  writeFileSync(file, JSON.stringify(template.toJSON(), null, 1));
  return file;
}

/** The pipeline state machine of a template: its logical id and properties. */
export function stateMachineOf(template: Template): { id: string; properties: Record<string, unknown> } {
  const machines = Object.entries(template.findResources('AWS::StepFunctions::StateMachine') as Resources);
  const [entry] = machines;
  if (machines.length !== 1 || !entry) throw new Error(`expected one state machine, found ${machines.length}`);
  return { id: entry[0], properties: entry[1].Properties };
}

/** Plausible deployed values of the placeholders that the template fills with references. */
const SAMPLE_VALUES: Record<string, string> = {
  ...Object.fromEntries(
    Object.values(HANDLERS).map((h) => [
      h.placeholder,
      `arn:aws:lambda:us-east-1:123456789012:function:${h.localName}`,
    ]),
  ),
  [PLACEHOLDERS.athenaWorkGroup]: 'Sluice-0123456789ab',
  [PLACEHOLDERS.glueDatabase]: 'sluice_0123456789ab',
  [PLACEHOLDERS.failureTopicArn]: 'arn:aws:sns:us-east-1:123456789012:sluice-failures',
  [PLACEHOLDERS.workingBucketName]: 'sluice-working-0123456789ab',
};

/**
 * The state machine's definition as CloudFormation would create it: each `${Key}` of
 * DefinitionSubstitutions replaced by its value when the template spells it (e.g.
 * ChildExecutionType), by a plausible value of the same kind when it is a reference.
 */
export function renderedDefinition(template: Template): string {
  const { properties } = stateMachineOf(template);
  const substitutions = properties.DefinitionSubstitutions as Record<string, unknown>;
  let definition = properties.DefinitionString as string;
  for (const [key, value] of Object.entries(substitutions)) {
    const text = typeof value === 'string' ? value : SAMPLE_VALUES[key];
    if (text === undefined) throw new Error(`no sample value for the placeholder ${key}: add one to SAMPLE_VALUES`);
    definition = definition.replaceAll(`\${${key}}`, text);
  }
  return definition;
}
