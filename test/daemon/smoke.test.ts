import t from 'tap';
import { BIN, ROOT_ARGS, archived, dropJob, run, scratch } from '../helpers/helpers.js';

t.test('drains a spool with --once', async (t) => {
  const { spool, archive } = scratch(t);
  for (let i = 0; i < 3; i++) dropJob(spool, `job${i}`, '#!/bin/sh\necho hi\n');
  const r = await run(t, BIN.pmjq, [...ROOT_ARGS, '--once', '-o', archive, spool]);
  t.equal(r.code, 0, "exit status 0");
  t.equal(archived(archive).length, 3);
});
