import { Bucket } from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { synthStack, twoPipelinesDir } from './fixture.ts';

/** Rule ids of the findings cdk-nag's AwsSolutions pack reports and nobody acknowledged. */
function nagFindings(scope: Parameters<AwsSolutionsChecks['validateScope']>[0]): string[] {
  const report = new AwsSolutionsChecks().validateScope(scope);
  return report.violations.flatMap((v) =>
    v.violatingResources.map((r) => `${v.severity} ${v.ruleName} at ${r.constructPath}`),
  );
}

describe('cdk-nag AwsSolutions', () => {
  it('finds nothing unacknowledged in the stack, errors or warnings', () => {
    const { stack } = synthStack();
    expect(nagFindings(stack)).toEqual([]);
  });

  it('finds nothing unacknowledged with several pipelines', () => {
    const { stack } = synthStack({ pipelinesDir: twoPipelinesDir() });
    expect(nagFindings(stack)).toEqual([]);
  });

  it.each([
    ['the LocalStack template', { target: 'localstack' as const }],
    ['Lake Formation on', { lakeFormation: true }],
  ])('finds nothing unacknowledged in %s', (_, props) => {
    const { stack } = synthStack(props);
    expect(nagFindings(stack)).toEqual([]);
  });

  it('still reports what nobody acknowledged', () => {
    const { stack } = synthStack();
    new Bucket(stack, 'Careless');
    expect(nagFindings(stack)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/AwsSolutions-S1 at Test\/Careless/),
        expect.stringMatching(/AwsSolutions-S10 at Test\/Careless/),
      ]),
    );
  });
});
