// The JSON API of `pmjqctl serve` (pmjqctl(1) SERVE; routes and shapes in
// pmjqctl(1)). Every route is a thin layer over the pmjqctl library
// (src/control/): the same state reading as `status` and `ls`, the same
// submit, kill, retry, pause and resume, so that the API and the command line
// never disagree. Bodies and query strings are checked by JSON schemas;
// mutating routes need the bearer token (auth.ts).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SORT_KEYS, STATES } from '../control/ls.js';
import { requireToken, type AuthConfig } from './auth.js';
import { ApiError, type Control } from './control.js';

const NAME = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/\\u0000]+$' } as const;
const ID = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^/\\u0000]+$' } as const;

/** Friendlier words for query-string patterns (ajv would say "must match pattern …"). */
export const PATTERN_HINTS: Record<string, string> = {
  offset: 'must be a whole number (0 or more)',
  limit: 'must be a whole number from 1 to 1000',
  state: `must be one or more of ${STATES.join(', ')}, comma-separated`,
  sort: `must be one of ${SORT_KEYS.join(', ')}`,
  order: 'must be asc or desc',
  tail: 'must be a whole number of bytes (0 to 1048576)',
  id: 'must not be empty nor contain "/"',
  group: 'must not be empty nor contain "/"',
  name: 'must not be empty nor contain "/"',
};

const jobsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', pattern: `^(${STATES.join('|')})(,(${STATES.join('|')}))*$` },
    group: { type: 'string', minLength: 1, maxLength: 4096 },
    q: { type: 'string', maxLength: 1000 },
    sort: { type: 'string', pattern: `^(${SORT_KEYS.join('|')})$` },
    order: { type: 'string', pattern: '^(asc|desc)$' },
    offset: { type: 'string', pattern: '^[0-9]{1,9}$' },
    limit: { type: 'string', pattern: '^([1-9][0-9]{0,2}|1000)$' },
  },
} as const;

const submitBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    script: { type: 'string', minLength: 1 },
    command: { type: 'array', minItems: 1, maxItems: 100_000, items: { type: 'string' } },
    group: NAME,
    name: NAME,
    cwd: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/' },
  },
} as const;

const groupsBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    groups: { type: 'array', maxItems: 10_000, items: NAME },
  },
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: ID },
} as const;

interface JobsQuery { state?: string; group?: string; q?: string; sort?: string; order?: string; offset?: string; limit?: string }
interface SubmitBody { script?: string; command?: string[]; group?: string; name?: string; cwd?: string }
interface GroupsBody { groups?: string[] }

export function registerApi(app: FastifyInstance, control: Control, auth: AuthConfig): void {
  const write = { preHandler: requireToken(auth) };

  app.get('/api/status', async () => control.status());

  app.get('/api/charts', async () => control.charts());

  app.get<{ Querystring: JobsQuery }>('/api/jobs', { schema: { querystring: jobsQuery } }, async (req) => {
    const q = req.query;
    return control.jobs({
      states: q.state ? q.state.split(',') : undefined,
      groups: q.group ? q.group.split(',').filter((g) => g !== '') : undefined,
      q: q.q && q.q.trim() !== '' ? q.q.trim() : undefined,
      sort: q.sort,
      order: q.order === 'desc' ? 'desc' : 'asc',
      offset: q.offset ? Number(q.offset) : 0,
      limit: q.limit ? Number(q.limit) : 50,
    });
  });

  app.get<{ Params: { id: string }; Querystring: { tail?: string } }>('/api/jobs/:id', {
    schema: {
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { tail: { type: 'string', pattern: '^[0-9]{1,7}$' } } },
    },
  }, async (req) => control.job(req.params.id, req.query.tail ? Math.min(Number(req.query.tail), 1 << 20) : 64 * 1024));

  app.post<{ Body: SubmitBody }>('/api/jobs', { ...write, schema: { body: submitBody } }, async (req, reply) => {
    const b = req.body;
    if ((b.script === undefined) === (b.command === undefined)) {
      throw new ApiError(400, 'invalid', 'give either "script" (the job file\'s content) or "command" (an argument array), not both', b.script === undefined ? 'script' : 'command');
    }
    const out = control.submit(b);
    return reply.code(201).send(out);
  });

  app.post<{ Params: { id: string } }>('/api/jobs/:id/kill', { ...write, schema: { params: idParams } },
    async (req, reply) => {
      const out = control.kill(req.params.id);
      // a running job is killed by its node at its next poll: accepted, not done yet
      return reply.code(out.pending ? 202 : 200).send(out);
    });

  app.post<{ Params: { id: string } }>('/api/jobs/:id/retry', { ...write, schema: { params: idParams } },
    async (req) => control.retry(req.params.id));

  app.post<{ Body: GroupsBody | null }>('/api/pause', { ...write, schema: { body: groupsBody } },
    async (req) => control.pause(req.body?.groups ?? []));

  app.post<{ Body: GroupsBody | null }>('/api/resume', { ...write, schema: { body: groupsBody } },
    async (req) => control.resume(req.body?.groups ?? []));
}

/** Error bodies: {"error": CODE, "message": "...", "field"?: NAME}. */
export function errorHandler(err: Error & { statusCode?: number; code?: string; validation?: ValidationIssue[]; validationContext?: string }, _req: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof ApiError) {
    void reply.code(err.status).send({ error: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) });
    return;
  }
  if (err.validation?.length) {
    const v = describeValidation(err.validation[0]!, err.validationContext ?? 'request');
    void reply.code(400).send({ error: 'invalid', message: v.message, field: v.field });
    return;
  }
  const status = err.statusCode ?? 500;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    void reply.code(413).send({ error: 'too-large', message: `request body too large (limit ${LIMIT_TEXT})` });
    return;
  }
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (status === 400 && err instanceof SyntaxError)) {
    void reply.code(400).send({ error: 'bad-json', message: `request body is not valid JSON: ${err.message}` });
    return;
  }
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    void reply.code(400).send({ error: 'bad-json', message: 'request body is empty but content-type is application/json' });
    return;
  }
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    void reply.code(415).send({ error: 'unsupported-media-type', message: 'send the body as application/json' });
    return;
  }
  if (status < 500) {
    void reply.code(status).send({ error: err.code ?? 'bad-request', message: err.message });
    return;
  }
  reply.log.error(err);
  void reply.code(500).send({ error: 'internal', message: err.message });
}

let LIMIT_TEXT = '1 MiB';
export function setLimitText(bytes: number): void {
  LIMIT_TEXT = bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : `${bytes} bytes`;
}

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** One validation error in words that name the field: "body: 'group' must be string". */
export function describeValidation(v: ValidationIssue, context: string): { message: string; field: string } {
  const where = context === 'querystring' ? 'query string' : context === 'params' ? 'path' : context;
  const parts = v.instancePath.split('/').filter((p) => p !== '');
  if (v.keyword === 'required' && typeof v.params.missingProperty === 'string') parts.push(v.params.missingProperty);
  if (v.keyword === 'additionalProperties' && typeof v.params.additionalProperty === 'string') {
    const field = [...parts, v.params.additionalProperty].join('.');
    return { field, message: `${where}: unknown field '${field}'` };
  }
  const field = parts.join('.') || '(whole)';
  let msg = v.message ?? v.keyword;
  if (v.keyword === 'required') msg = 'is required';
  const top = parts[0];
  if (v.keyword === 'pattern' && top !== undefined && PATTERN_HINTS[top]) msg = PATTERN_HINTS[top];
  return { field, message: `${where}: '${field}' ${msg}` };
}
