/** A fake Lambda handler: echoes its event with a marker. */
export const handler = async (event: Record<string, unknown>) => ({ ...event, handled: true });
