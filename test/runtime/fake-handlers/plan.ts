/** A fake Lambda handler in the file the catalog names for `sluice-plan`: proves the lookup goes through the catalog. */
export const handler = async (event: Record<string, unknown>) => ({ fake: 'plan.ts', event });
