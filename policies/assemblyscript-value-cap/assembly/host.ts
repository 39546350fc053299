// The host side of ABI v1 for this policy: the one host function, and where AssemblyScript's
// `abort` goes. Kept out of policy.ts so that neither is exported.

@external("keyward:host/v1", "log")
declare function hostLog(ptr: usize, len: i32): void;

/** Sends `line` to the host log, as UTF-8 (the host keeps 32 lines of 1 KiB). */
export function log(line: string): void {
  const bytes = String.UTF8.encode(line);
  hostLog(changetype<usize>(bytes), bytes.byteLength);
}

/**
 * AssemblyScript calls `abort` on a failed assertion or a bad index; by default it imports it
 * from `env`, which Keyward refuses. asconfig.json points `abort` here instead: the message
 * goes to the host log and the instance traps, which the host turns into a `policy_trap` deny.
 */
export function abort(
  message: string | null,
  fileName: string | null,
  line: u32,
  column: u32,
): void {
  log(
    "abort: " +
      (message === null ? "" : message) +
      " at " +
      (fileName === null ? "?" : fileName) +
      ":" +
      line.toString() +
      ":" +
      column.toString(),
  );
  unreachable();
}

