// Peer-compatibility scenario for Xen Orchestra's XAPI client (npm `xen-api`).
//
// Run by tests/tests/peers.rs against an in-process xapi-sim; by hand:
//
//   XO_PEER_URL=https://127.0.0.1:PORT XO_PEER_USER=root XO_PEER_PASSWORD=root \
//     node tests/peers/node/scenario.mjs
//
// Optional env: XO_PEER_TRANSPORT (`auto` = JSON-RPC with XML-RPC fallback, the default; `json-rpc`;
// `xml-rpc`), XO_PEER_SLAVE_URL (a pool member that is not the master: the client must follow
// HOST_IS_SLAVE).
//
// xen-api reports trouble in its event loop and initial fetch through console.warn/console.error
// and keeps going, so this script captures both and fails if anything was logged.
//
// Every step prints `ok - <step>` or `not ok - <step>: <error>`; exit status 1 if any step failed.

import { createClient } from 'xen-api'

const URL_ = process.env.XO_PEER_URL
const USER = process.env.XO_PEER_USER ?? 'root'
const PASSWORD = process.env.XO_PEER_PASSWORD ?? 'root'
const TRANSPORT = process.env.XO_PEER_TRANSPORT ?? 'auto'
const SLAVE_URL = process.env.XO_PEER_SLAVE_URL

const BOGUS_REF = 'OpaqueRef:00000000-dead-beef-0000-000000000000'
const REF_RE = /^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Classes for which event.from never yields events (xapi.md §3.1): their cache is only as fresh
// as the initial fetch, so their counts are not compared.
const NO_EVENT_CLASSES = new Set(['session', 'user', 'secret', 'event', 'data_source', 'auth'])
// Hang guard for one awaited condition; not a timing assertion.
const WAIT_LIMIT_MS = 60e3

if (URL_ === undefined) {
  console.error('XO_PEER_URL is not set')
  process.exit(2)
}

// -- capture what the library logs -------------------------------------------------------------

const logged = []
for (const level of ['warn', 'error']) {
  const original = console[level].bind(console)
  console[level] = (...args) => {
    logged.push(`console.${level}: ${args.map(formatLogged).join(' ')}`)
    original(...args)
  }
}
function formatLogged(arg) {
  if (arg instanceof Error) {
    return `${arg.name} ${arg.code ?? ''} ${arg.message}${arg.call ? ` (call ${JSON.stringify(arg.call)})` : ''}`
  }
  return typeof arg === 'string' ? arg : JSON.stringify(arg)
}
process.on('unhandledRejection', reason => logged.push(`unhandledRejection: ${formatLogged(reason)}`))

// -- helpers -------------------------------------------------------------------------------------

class StepFailed extends Error {}

function check(cond, what) {
  if (!cond) throw new StepFailed(what)
}

function describeError(error) {
  if (error?.code !== undefined && Array.isArray(error.params)) {
    return `XapiError ${error.code} ${JSON.stringify(error.params)}${error.call ? ` from ${error.call.method}` : ''}`
  }
  return `${error?.name ?? 'Error'}: ${error?.message ?? error}`
}

async function expectXapiError(code, what, promise) {
  let result
  try {
    result = await promise
  } catch (error) {
    check(error?.code === code, `${what}: expected ${code}, got ${describeError(error)}`)
    check(
      Array.isArray(error.params) && error.params.every(p => typeof p === 'string'),
      `${what}: error params must be strings, got ${JSON.stringify(error.params)}`
    )
    return error.params
  }
  throw new StepFailed(`${what}: expected ${code}, but it succeeded with ${JSON.stringify(result)}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor(what, fn) {
  const deadline = Date.now() + WAIT_LIMIT_MS
  while (true) {
    const value = fn()
    if (value) return value
    if (Date.now() > deadline) throw new StepFailed(`gave up waiting for ${what}`)
    await sleep(25)
  }
}

async function withLimit(what, promise) {
  let timer
  const limit = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new StepFailed(`gave up waiting for ${what}`)), WAIT_LIMIT_MS)
  })
  try {
    return await Promise.race([promise, limit])
  } finally {
    clearTimeout(timer)
  }
}

function cached(xapi, type) {
  return Object.values(xapi.objects.all).filter(o => o.$type === type)
}

// A halted guest VM; if the pool has none, a running one is shut down first.
async function pickHaltedVm(xapi) {
  const guests = cached(xapi, 'VM').filter(o => !o.is_a_template && !o.is_a_snapshot && !o.is_control_domain)
  const halted = guests.find(o => o.power_state === 'Halted')
  if (halted !== undefined) return halted
  const running = guests.find(o => o.power_state === 'Running')
  check(running !== undefined, 'no guest VM in the cache is Halted or Running')
  await xapi.call('VM.hard_shutdown', running.$ref)
  return waitFor('the VM to halt', () => {
    const o = xapi.getObjectByRef(running.$ref)
    return o.power_state === 'Halted' && o
  })
}

const results = []
async function step(name, fn) {
  try {
    await fn()
    results.push(true)
    console.log(`ok - ${name}`)
  } catch (error) {
    results.push(false)
    console.log(`not ok - ${name}: ${describeError(error)}`)
    if (!(error instanceof StepFailed) && error?.stack) console.log(error.stack)
  }
}

// -- scenario ----------------------------------------------------------------------------------

const xapi = createClient({
  url: URL_,
  allowUnauthorized: true,
  auth: { user: USER, password: PASSWORD },
  transport: TRANSPORT,
})
let vm // the VM the lifecycle steps drive

// xen-api re-fetches every task whenever event.from's valid_ref_counts.task differs from the number
// of tasks it caches: a silent cost if the server's count is off. Count those re-fetches.
let taskRefetches = 0
let initialFetchDone = false
{
  const refresh = xapi._refreshCachedRecords.bind(xapi)
  xapi._refreshCachedRecords = types => {
    if (initialFetchDone && types.length === 1 && types[0] === 'task') ++taskRefetches
    return refresh(types)
  }
}

await step(`connect (transport ${TRANSPORT}): login, pool.get_all_records, system.listMethods`, async () => {
  await withLimit('connect()', xapi.connect())
  check(xapi.status === 'connected', `status ${xapi.status}`)
  check(xapi.pool !== null && REF_RE.test(xapi.pool.$ref), `pool ref ${xapi.pool?.$ref}`)
})

await step('event.inject + get_all_records of every class fill `objects`', async () => {
  await withLimit('objectsFetched', xapi.objectsFetched)
  initialFetchDone = true
  const types = xapi._types // what xen-api derived from system.listMethods
  check(Array.isArray(types) && types.includes('VM') && types.includes('task'), `types ${JSON.stringify(types)}`)
  for (const type of ['pool', 'host', 'VM', 'SR', 'network', 'PIF', 'VDI', 'VBD']) {
    check(cached(xapi, type).length > 0, `no ${type} in the cache`)
  }
  console.log(`#   ${types.length} classes, ${xapi.objects.size} cached objects`)
})

await step('cache agrees with <class>.get_all_records; records of a class share one field set', async () => {
  // let a couple of event.from rounds pass first
  await withLimit('barrier()', xapi.barrier())
  const problems = []
  let total = 0
  for (const type of xapi._types) {
    let records
    try {
      records = await xapi.call(`${type}.get_all_records`)
    } catch (error) {
      // classes removed from the API answer MESSAGE_REMOVED; xen-api skips them silently too
      if (error?.code !== 'MESSAGE_REMOVED') problems.push(`${type}.get_all_records -> ${describeError(error)}`)
      continue
    }
    const refs = Object.keys(records)
    total += refs.length
    let fields
    for (const ref of refs) {
      if (!REF_RE.test(ref)) problems.push(`${type}: key ${ref} is not an OpaqueRef`)
      const keys = Object.keys(records[ref]).sort().join(',')
      if (fields === undefined) fields = keys
      else if (keys !== fields) problems.push(`${type} ${ref}: field set differs from its siblings'`)
    }
    if (!NO_EVENT_CLASSES.has(type.toLowerCase())) {
      const n = cached(xapi, type).length
      if (n !== refs.length) problems.push(`${type}: ${n} cached vs ${refs.length} from get_all_records`)
    }
  }
  check(xapi.objects.size <= total, `cache holds ${xapi.objects.size} objects, XAPI ${total}`)
  check(problems.length === 0, problems.slice(0, 20).join('; '))
})

await step('barrier(): pool.add_to_other_config shows up through event.from', async () => {
  const pool = await withLimit('barrier(pool)', xapi.barrier(xapi.pool.$ref))
  check(pool?.$type === 'pool', 'barrier(ref) returns the cached pool')
})

await step("call('VM.start', vm, false, false); cache follows through events", async () => {
  vm = await pickHaltedVm(xapi)
  const result = await xapi.call('VM.start', vm.$ref, false, false)
  check(result === '', `VM.start returned ${JSON.stringify(result)}, want ""`)
  const running = await waitFor('VM power_state Running in the cache', () => {
    const o = xapi.getObjectByRef(vm.$ref)
    return o.power_state === 'Running' && o
  })
  check(REF_RE.test(running.resident_on), `resident_on ${running.resident_on}`)
  check(running.$resident_on?.$type === 'host', 'resident_on is not a cached host')
})

await step('VM.start on a running VM -> VM_BAD_POWER_STATE', async () => {
  const params = await expectXapiError('VM_BAD_POWER_STATE', 'VM.start(running vm)', xapi.call('VM.start', vm.$ref, false, false))
  check(
    JSON.stringify(params) === JSON.stringify([vm.$ref, 'halted', 'running']),
    `params ${JSON.stringify(params)}, want [vm, "halted", "running"]`
  )
})

await step("callAsync('VM.clean_shutdown', vm): Async.* task followed through events", async () => {
  const result = await withLimit('callAsync(VM.clean_shutdown)', xapi.callAsync('VM.clean_shutdown', vm.$ref))
  check(result === '', `task result ${JSON.stringify(result)}, want ""`)
  await waitFor('VM power_state Halted in the cache', () => xapi.getObjectByRef(vm.$ref).power_state === 'Halted')
})

await step("callAsync('VM.clone', vm, name) -> ref; add then del after VM.destroy", async () => {
  const clone = await withLimit('callAsync(VM.clone)', xapi.callAsync('VM.clone', vm.$ref, 'peer-node-clone'))
  check(typeof clone === 'string' && REF_RE.test(clone), `clone result ${JSON.stringify(clone)}`)
  const o = await waitFor('the clone in the cache', () => xapi.getObjectByRef(clone, undefined))
  check(o.name_label === 'peer-node-clone', `clone name_label ${o.name_label}`)
  check(o.power_state === 'Halted', `clone power_state ${o.power_state}`)
  check(o.uuid !== vm.uuid, 'clone kept the source uuid')
  await xapi.call('VM.destroy', clone)
  await waitFor('the clone to leave the cache', () => xapi.getObjectByRef(clone, undefined) === undefined)
})

await step("call('VM.clone') sync + task bookkeeping (Async tasks destroyed)", async () => {
  const clone = await xapi.call('VM.clone', vm.$ref, 'peer-node-sync-clone')
  check(REF_RE.test(clone), `VM.clone returned ${JSON.stringify(clone)}`)
  await waitFor('the sync clone in the cache', () => xapi.getObjectByRef(clone, undefined))
  await xapi.call('VM.destroy', clone)
  await waitFor('the sync clone to leave the cache', () => xapi.getObjectByRef(clone, undefined) === undefined)
  await xapi.barrier()
  const pending = cached(xapi, 'task').filter(t => t.status === 'pending')
  check(pending.length === 0, `${pending.length} pending tasks left: ${pending.map(t => t.name_label).join(', ')}`)
})

await step('record helpers: set_name_label, update_other_config, add_tags (as XO edits a VM)', async () => {
  const o = xapi.getObjectByRef(vm.$ref)
  await o.set_name_label('peer-node-renamed')
  await o.update_other_config('xo-rs-peer', 'yes')
  await o.add_tags('peer')
  const fresh = await waitFor('the edits in the cache', () => {
    const c = xapi.getObjectByRef(vm.$ref)
    return c.name_label === 'peer-node-renamed' && c.other_config['xo-rs-peer'] === 'yes' && c.tags.includes('peer') && c
  })
  await fresh.update_other_config('xo-rs-peer', null) // remove_from_other_config
  await fresh.remove_tags('peer')
  await waitFor('the removals in the cache', () => {
    const c = xapi.getObjectByRef(vm.$ref)
    return !('xo-rs-peer' in c.other_config) && !c.tags.includes('peer')
  })
  check(fresh.$pool.$ref === xapi.pool.$ref, '$pool does not resolve to the pool')
  const hosts = await xapi.getAllRecords('host')
  check(hosts.length === cached(xapi, 'host').length, `getAllRecords('host') ${hosts.length} vs cache`)
})

await step('session loss under the event loop: client re-logs in, events flow again', async () => {
  const oldSession = xapi.sessionId
  // what a toolstack restart or an expired session looks like to the client
  await xapi._call('session.logout', [oldSession])
  // the next call fails SESSION_INVALID once, then xen-api opens a new session and retries
  await xapi.call('VM.set_name_label', vm.$ref, 'peer-node-after-relogin')
  check(xapi.sessionId !== oldSession, 'session id did not change')
  await withLimit('barrier() after re-login', xapi.barrier())
  await waitFor('the rename in the cache', () => xapi.getObjectByRef(vm.$ref).name_label === 'peer-node-after-relogin')
})

await step('error codes: HANDLE_INVALID, MESSAGE_PARAMETER_COUNT_MISMATCH, MESSAGE_METHOD_UNKNOWN', async () => {
  const params = await expectXapiError('HANDLE_INVALID', 'VM.get_record(bogus)', xapi.call('VM.get_record', BOGUS_REF))
  check(
    JSON.stringify(params) === JSON.stringify(['VM', BOGUS_REF]),
    `HANDLE_INVALID params ${JSON.stringify(params)}, want ["VM", ref]`
  )
  await expectXapiError('HANDLE_INVALID', 'VM.start(bogus)', xapi.call('VM.start', BOGUS_REF, false, false))
  const count = await expectXapiError(
    'MESSAGE_PARAMETER_COUNT_MISMATCH',
    'VM.start(vm) with 2 params',
    xapi.call('VM.start', vm.$ref)
  )
  check(count.length === 3 && count[0] === 'VM.start', `MESSAGE_PARAMETER_COUNT_MISMATCH params ${JSON.stringify(count)}`)
  await expectXapiError('MESSAGE_METHOD_UNKNOWN', 'VM.no_such_method', xapi.call('VM.no_such_method', vm.$ref))
})

await step('bad password -> SESSION_AUTHENTICATION_FAILED', async () => {
  const other = createClient({
    url: URL_,
    allowUnauthorized: true,
    auth: { user: USER, password: PASSWORD + '-wrong' },
    transport: TRANSPORT,
    watchEvents: false,
  })
  const params = await expectXapiError('SESSION_AUTHENTICATION_FAILED', 'connect(bad password)', other.connect())
  check(params[0] === USER, `params ${JSON.stringify(params)}, want [user, msg]`)
})

if (SLAVE_URL !== undefined) {
  await step('connect through a slave: HOST_IS_SLAVE is followed to the master', async () => {
    const other = createClient({
      url: SLAVE_URL,
      allowUnauthorized: true,
      auth: { user: USER, password: PASSWORD },
      transport: TRANSPORT,
      watchEvents: false,
    })
    await withLimit('connect(slave)', other.connect())
    check(other.pool.$ref === xapi.pool.$ref, 'connected to another pool')
    await other.disconnect()
  })
}

await step('event loop healthy: no watchEventsError, nothing logged', async () => {
  await withLimit('final barrier()', xapi.barrier())
  check(xapi.watchEventsError === undefined, `watchEventsError ${describeError(xapi.watchEventsError)}`)
  check(xapi.lastEventFetchedTimestamp !== undefined, 'no event.from round completed')
  check(logged.length === 0, `xen-api logged:\n  ${logged.join('\n  ')}`)
  console.log(`#   task re-fetches after the initial load: ${taskRefetches}`)
  check(
    taskRefetches === 0,
    `event.from valid_ref_counts.task disagreed with the task add/del events ${taskRefetches} times (each time xen-api re-fetched every task)`
  )
})

await xapi.disconnect()

const passed = results.filter(Boolean).length
const failed = results.length - passed
console.log(`node xen-api peer (${TRANSPORT}): ${passed} steps ok, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
