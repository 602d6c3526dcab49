import { rmSync } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { localS3Client } from '../../runtime/s3-client.ts';
import { type ObjectCreated, type S3Server, startS3Server } from '../../runtime/s3-server.ts';
import { tempDir } from '../support/temp.ts';

export interface TestS3 {
  readonly dir: string;
  readonly server: S3Server;
  readonly s3: S3Client;
  readonly events: ObjectCreated[];
  close(): Promise<void>;
}

/** An embedded S3 server on a free port, with its data in a fresh temporary folder. */
export async function startTestS3(): Promise<TestS3> {
  const dir = tempDir('runtime-test-');
  const events: ObjectCreated[] = [];
  const server = await startS3Server({ dir, port: 0, onObjectCreated: (e) => events.push(e) });
  const s3 = localS3Client(server.endpoint);
  return {
    dir,
    server,
    s3,
    events,
    async close() {
      s3.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
