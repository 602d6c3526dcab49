/**
 * Bounded parallelism for S3 requests. One request takes tens of milliseconds, so a
 * loop that awaits each in turn spends its time waiting: 100,000 objects at 20 ms are
 * half an hour. Running a bounded number at once keeps the time to a few seconds
 * without opening thousands of sockets or passing S3's request rate per prefix.
 */

/**
 * Requests in flight per loop. S3 serves at least 3,500 writes and 5,500 reads per second
 * per partitioned prefix (https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html);
 * 64 requests of about 20 ms each are about 3,200 per second, under both.
 */
export const S3_PARALLELISM = 64;

/**
 * Maps `items` through `fn` with at most `limit` calls pending, keeping the order of
 * `items` in the result. On the first failure no new call starts; the calls already
 * started are awaited, then that first error is thrown.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const lane = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T, i);
      } catch (error) {
        if (!failed) firstError = error;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failed) throw firstError;
  return results;
}
