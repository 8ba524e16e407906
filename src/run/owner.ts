// Who a job runs as. Decided once, from the job file actually claimed (its
// lstat in the daemon's own claimed area), and then carried unchanged to
// everything the job asks for: its sub-jobs and its repeats run as the same
// user, never as the daemon.

export interface JobOwner {
  uid: number;
  /** primary group: the passwd entry's, or the file's group for a uid without an account */
  gid: number;
  /** supplementary groups (with gid); empty for a uid without an account */
  groups: number[];
}
