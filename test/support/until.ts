/**
 * Polls `condition` every `intervalMs` until it holds; rejects naming `what` once `timeoutMs`
 * have passed. For what a test cannot be told of directly: a watch that has delivered, a
 * reflector that has listed, a process that has written a line.
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, intervalMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
