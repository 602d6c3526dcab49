/**
 * The CDK app (`cdk.json` runs `node infra/app.ts`). No AWS credentials are needed to synth:
 * the stack is account-agnostic unless the CLI knows the account.
 *
 * Context: `-c stackName=...` (default Sluice), `-c failureEmails=a@example.com,b@example.com`.
 */

import { join } from 'node:path';
import { App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { checkTransforms } from '../functions/pipeline/check-transform.ts';
import { loadPipelines } from '../functions/pipeline/definition.ts';
import { SluiceStack } from './stack.ts';

// A transform that does not fit its table fails the synth, naming the pipeline.
await checkTransforms(loadPipelines(join(import.meta.dirname, '../pipelines')).values());

const app = new App();
const context = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value !== '' ? value : undefined;
};

const stackName = context('stackName') ?? 'Sluice';
new SluiceStack(app, stackName, {
  description: 'Sluice: serverless batch pipelines (S3 -> Step Functions -> Lambda + DuckDB -> Iceberg/Athena)',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1' },
  failureEmails: context('failureEmails')?.split(',') ?? [],
});
Tags.of(app).add('project', 'sluice');
// cdk-nag v3 is a validation plugin: any finding that is not acknowledged (infra/nag.ts) fails the synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
