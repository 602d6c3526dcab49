/**
 * cdk-nag (v3) findings acknowledged through CDK's `Validations`. Each finding is acknowledged
 * on its own, by its exact id (`AwsSolutions-IAM5[Resource::...]`), with the reason it is
 * acceptable: a new wildcard elsewhere still fails the synth.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** Acknowledges a rule, or the given findings of a rule, on a construct and everything in it. */
export function acknowledge(scope: IConstruct, rule: string, reason: string, findings?: readonly string[]): void {
  const ids = findings === undefined ? [rule] : findings.map((finding) => `${rule}[${finding}]`);
  Validations.of(scope).acknowledge(...ids.map((id) => ({ id, reason })));
}

/** The IAM5 finding for a resource ARN, spelled as cdk-nag spells it: `<Ref>`, `<LogicalId.Attr>`. */
export function resourceFinding(scope: IConstruct, arn: string): string {
  return `Resource::${flatten(Stack.of(scope).resolve(arn))}`;
}

function flatten(node: unknown): string {
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (Array.isArray(o['Fn::Join'])) {
      const [separator, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map(flatten).join(separator);
    }
    if (Array.isArray(o['Fn::GetAtt'])) {
      const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
      return `<${flatten(resource)}.${flatten(attribute)}>`;
    }
    if ('Ref' in o) return `<${flatten(o.Ref)}>`;
  }
  return JSON.stringify(node);
}
