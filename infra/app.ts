/**
 * The CDK app (`cdk.json` runs `node infra/app.ts`). No AWS credentials are needed to synth:
 * the stack is account-agnostic unless the CLI knows the account.
 *
 * Context: `-c stackName=...` (default Sluice), `-c failureEmails=a@example.com,b@example.com`,
 * `-c target=aws|localstack` (default aws; see infra/target.ts and docs/localstack.md),
 * `-c architecture=arm64|x86_64` (default arm64 on AWS, the build host's on LocalStack),
 * `-c lakeFormation=true` (the account grants Data Catalog access through Lake Formation).
 */

import { join } from 'node:path';
import { App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { SluiceError } from '../functions/errors.ts';
import { checkTransforms } from '../functions/pipeline/check-transform.ts';
import { loadPipelines } from '../functions/pipeline/definition.ts';
import { checkTableLock, writeTableLocks } from '../functions/pipeline/evolution.ts';
import { SluiceStack } from './stack.ts';
import { readTargetSettings } from './target.ts';

const pipelinesDir = join(import.meta.dirname, '../pipelines');
try {
  const pipelines = loadPipelines(pipelinesDir);
  // A transform that does not fit its table fails the synth, naming the pipeline.
  await checkTransforms(pipelines.values());
  // A table change other than columns appended at the end fails the synth, naming the table and column;
  // appended columns update the committed lock (pipelines/<name>.tables.json), to be committed with the change.
  const locks = checkTableLock(pipelines, pipelinesDir);
  writeTableLocks(locks);
  for (const lock of locks) {
    console.error(
      `sluice: ${lock.added.length > 0 ? `added ${lock.added.join(', ')} to` : 'wrote'} ${lock.file}; commit it with the pipeline`,
    );
  }
} catch (error) {
  // A definition the user must fix: one plain message, no stack trace.
  if (!(error instanceof SluiceError)) throw error;
  console.error(`sluice: ${error.message}`);
  process.exit(1);
}

const app = new App();
const context = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value !== '' ? value : undefined;
};

const stackName = context('stackName') ?? 'Sluice';
// Unknown values fail here, naming the setting.
const targetSettings = readTargetSettings((key) => app.node.tryGetContext(key));
new SluiceStack(app, stackName, {
  ...targetSettings,
  description: 'Sluice: serverless batch pipelines (S3 -> Step Functions -> Lambda + DuckDB -> Iceberg/Athena)',
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1' },
  failureEmails: context('failureEmails')?.split(',') ?? [],
});
Tags.of(app).add('project', 'sluice');
// cdk-nag v3 is a validation plugin: any finding that is not acknowledged (infra/nag.ts) fails the synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
