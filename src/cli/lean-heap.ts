// Imported first by the daemon's front-ends (pmjq, chaqum): a daemon holding
// 100 000 queued jobs keeps ~45 MB live, and V8's default heap growth lets
// the garbage that every job's short-lived objects leave in the old
// generation pile up to several times that before a full collection (RSS
// past 300 MB). --optimize-for-size makes V8 grow the heap in smaller steps
// and collect sooner: RSS ~120 MB at the same throughput (bench: backlog).
// It affects heap sizing decisions made after start-up, which is all of them
// that matter here.

import v8 from 'node:v8';

v8.setFlagsFromString('--optimize-for-size');
