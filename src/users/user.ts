// Runs in: every process (types only).

/** A local account, as NSS or a passwd file describes it. Plain data: it crosses into worker threads. */
export interface UserAccount {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary group ids (from NSS `initgroups`, or the group file). */
  groups: number[];
  home: string;
  shell: string;
}
