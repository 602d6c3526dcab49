/** `onDelete: remove` adds an EventBridge rule on S3 "Object Deleted" events that starts a 'delete' run. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { synthStack, twoPipelinesDir } from './fixture.ts';

describe('the delete trigger', () => {
  const dir = twoPipelinesDir();
  const file = join(dir, 'access-logs.yaml');
  writeFileSync(file, readFileSync(file, 'utf8').replace('onDelete: keep', 'onDelete: remove'));
  const { template } = synthStack({ pipelinesDir: dir });
  const ref = (prefix: string) => ({ Ref: Match.stringLikeRegexp(`^${prefix}`) });

  it('starts a delete run for objects deleted under a pipeline with onDelete: remove, and only for it', () => {
    const rules = template.findResources('AWS::Events::Rule', {
      Properties: { EventPattern: { 'detail-type': ['Object Deleted'] } },
    });
    expect(Object.keys(rules)).toHaveLength(1);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Deleted'],
        detail: {
          bucket: { name: [ref('StorageInput')] },
          object: { key: [{ wildcard: 'access-logs/*.csv' }, { wildcard: 'access-logs/*.csv.gz' }] },
        },
      },
      Targets: [
        Match.objectLike({
          InputTransformer: Match.objectLike({
            InputTemplate:
              '{"pipeline":"access-logs","trigger":"delete","bucket":<detail-bucket-name>,"key":<detail-object-key>}',
          }),
          DeadLetterConfig: Match.anyValue(),
        }),
      ],
    });
  });
});
