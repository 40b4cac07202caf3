// Tests that need root or a Debian package: in CI (CI=true) a missing
// requirement is a failure, never a silent skip; on a developer machine the
// test is skipped with a message that says what to install and why.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export const inCI = process.env.CI === 'true';

function missing(t: TestContext, what: string): boolean {
  if (inCI) throw new Error(`CI requirement missing: ${what} (.ci/run must install it)`);
  t.skip(`needs ${what}; run as root after 'bash .ci/run' installed it, or in CI`);
  return true;
}

/** Returns true when the test cannot run here (and has been marked skipped). */
export function lacksRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return false;
  return missing(t, 'root (real setuid to test users)');
}

/** The service account serve drops to by default (milter.user); .ci/run creates it with systemd-sysusers. */
export const SERVICE_ACCOUNT = 'per-user-milter';

/** Returns true when the per-user-milter account is missing (and the test has been marked skipped). */
export function lacksServiceAccount(t: TestContext): boolean {
  try {
    execFileSync('getent', ['passwd', SERVICE_ACCOUNT], { stdio: 'ignore' });
    return false;
  } catch {
    return missing(t, `the ${SERVICE_ACCOUNT} system account (systemd-sysusers deploy/systemd/sysusers.d/per-user-milter.conf)`);
  }
}

/** Returns true when `command` is not on PATH (and the test has been marked skipped). */
export function lacksCommand(t: TestContext, command: string, debianPackage: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return false;
  } catch {
    return missing(t, `${command} (Debian package ${debianPackage})`);
  }
}
