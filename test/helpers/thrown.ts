/** What fn throws (undefined if it returns), for tests that then check the error's class and fields. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}
