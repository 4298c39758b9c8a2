// Real-client scenario for xo-server with Xen Orchestra's own WebSocket client (npm `xo-lib` 0.9.0).
//
// Run by xo-server's test binary (xo-server/tests/api/xo_lib.rs) against xo-server + an in-process
// xapi-sim; by hand:
//
//   XO_URL=http://127.0.0.1:8080 XO_POOL_HOST=https://127.0.0.1:8443 node tests/peers/xo-lib/scenario.mjs
//
// Env: XO_URL (required, xo-server base URL), XO_EMAIL / XO_PASSWORD (default admin@admin.net / admin),
// XO_POOL_HOST (required: an XAPI pool to register with server.add, credentials XO_POOL_USER /
// XO_POOL_PASSWORD, default root / root), XO_EXPECTED_VMS (optional: the pool's guest VM count).
//
// Every step prints `ok - <step>` or `not ok - <step>: <error>`, `skip - <step>: <why>` for steps the
// server cannot run (VM lifecycle when `vm.*` is not registered); exit status 1 if any step failed.

import xoLib from 'xo-lib'

const Xo = xoLib.default ?? xoLib
const XO_URL = process.env.XO_URL
const EMAIL = process.env.XO_EMAIL ?? 'admin@admin.net'
const PASSWORD = process.env.XO_PASSWORD ?? 'admin'
const POOL_HOST = process.env.XO_POOL_HOST
const POOL_USER = process.env.XO_POOL_USER ?? 'root'
const POOL_PASSWORD = process.env.XO_POOL_PASSWORD ?? 'root'
const EXPECTED_VMS = process.env.XO_EXPECTED_VMS === undefined ? undefined : Number(process.env.XO_EXPECTED_VMS)
// Hang guard for one awaited condition; not a timing assertion.
const WAIT_LIMIT_MS = 30e3

if (XO_URL === undefined || POOL_HOST === undefined) {
  console.error('XO_URL and XO_POOL_HOST must be set')
  process.exit(2)
}

let failures = 0
let passed = 0
let skipped = 0

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
}

function describe(e) {
  if (e == null) return String(e)
  const code = e.code !== undefined ? ` code=${e.code}` : ''
  const data = e.data !== undefined ? ` data=${JSON.stringify(e.data)}` : ''
  return `${e.message}${code}${data}`
}

async function step(name, fn) {
  try {
    await fn()
    passed++
    console.log(`ok - ${name}`)
  } catch (e) {
    failures++
    console.log(`not ok - ${name}: ${describe(e)}`)
  }
}

function skip(name, why) {
  skipped++
  console.log(`skip - ${name}: ${why}`)
}

async function expectError(promise, code, what) {
  let error
  try {
    await promise
  } catch (e) {
    error = e
  }
  check(error !== undefined, `${what} should fail`)
  check(error.code === code, `${what}: code ${error.code} (${error.message}), expected ${code}`)
  return error
}

// -- `all` notifications -----------------------------------------------------------------------

const objects = new Map()
const waiters = new Set()
let enterCount = 0
let exitCount = 0

function onNotification({ method, params }) {
  if (method !== 'all') return
  if (params.type === 'enter') {
    enterCount++
    for (const [id, o] of Object.entries(params.items)) objects.set(id, o)
  } else if (params.type === 'exit') {
    exitCount++
    for (const id of Object.keys(params.items)) objects.delete(id)
  }
  for (const w of waiters) {
    if (w.pred(params)) {
      waiters.delete(w)
      w.resolve(params)
    }
  }
}

function waitAll(pred, what) {
  return new Promise((resolve, reject) => {
    const w = { pred, resolve }
    waiters.add(w)
    setTimeout(() => {
      if (waiters.delete(w)) reject(new Error(`no matching all notification: ${what}`))
    }, WAIT_LIMIT_MS).unref()
  })
}

const vmsOf = items => Object.values(items).filter(o => o.type === 'VM')

// -- scenario ----------------------------------------------------------------------------------

const xo = new Xo({ url: XO_URL })
xo.on('notification', onNotification)

await step('open the WebSocket', () => xo.open())

await step('bad credentials give invalidCredentials (3)', async () => {
  await expectError(xo.signIn({ email: 'nobody@example.net', password: 'nope' }), 3, 'signIn')
  check(xo.user == null, 'no user after a failed sign-in')
})

await step('sign in', async () => {
  await xo.signIn({ email: EMAIL, password: PASSWORD })
  check(xo.user?.email === EMAIL, `user is ${JSON.stringify(xo.user)}`)
  check(xo.user.permission === 'admin', 'admin permission')
  const user = await xo.refreshUser()
  check(user.id === xo.user.id, 'refreshUser')
})

let methods = {}
await step('introspection (system.getMethodsInfo)', async () => {
  methods = await xo.call('system.getMethodsInfo')
  for (const m of ['xo.getAllObjects', 'server.add', 'server.getAll', 'session.signIn']) {
    check(m in methods, `${m} listed`)
  }
  check(methods['xo.getAllObjects'].description === 'Returns all XO objects', 'description')
  check(methods['server.add'].permission === 'admin', 'server.add is admin-only')
  const names = await xo.call('system.listMethods')
  check(names.length === Object.keys(methods).length, 'listMethods matches getMethodsInfo')
})

await step('session.* methods are refused client-side by xo-lib', async () => {
  let error
  try {
    await xo.call('session.getUser')
  } catch (e) {
    error = e
  }
  check(error !== undefined && /disabled/.test(error.message), 'xo-lib refuses session.*')
})

await step('bad params give invalidParameters (10)', async () => {
  const e = await expectError(xo.call('xo.getAllObjects', { limit: 'many' }), 10, 'limit string')
  check(Array.isArray(e.data?.errors) && e.data.errors[0].keyword === 'type', JSON.stringify(e.data))
  await expectError(xo.call('xo.getAllObjects', { bogus: true }), 10, 'unknown param')
  await expectError(xo.call('server.remove', {}), 10, 'missing id')
})

await step('unknown method gives -32601', () => expectError(xo.call('no.such'), -32601, 'no.such'))

await step('unknown server id gives noSuchObject (1)', () =>
  expectError(xo.call('server.remove', { id: 'nope' }), 1, 'server.remove')
)

await step('wrong pool credentials give authenticationFailed (8)', async () => {
  const id = await xo.call('server.add', {
    host: POOL_HOST,
    username: POOL_USER,
    password: 'wrong',
    allowUnauthorized: true,
    autoConnect: false,
  })
  await expectError(xo.call('server.enable', { id }), 8, 'server.enable')
  const s = (await xo.call('server.getAll')).find(s => s.id === id)
  check(s.status === 'disconnected', `status ${s.status}`)
  check(s.error?.code === 'SESSION_AUTHENTICATION_FAILED', JSON.stringify(s.error))
  check(!('password' in s), 'password not returned')
  await xo.call('server.remove', { id })
})

let serverId
let vmCount
await step('server.add connects and the objects arrive as all/enter', async () => {
  const entered = waitAll(p => p.type === 'enter' && vmsOf(p.items).length > 0, 'VMs enter')
  serverId = await xo.call('server.add', {
    host: POOL_HOST,
    username: POOL_USER,
    password: POOL_PASSWORD,
    allowUnauthorized: true,
    label: 'xo-lib scenario',
  })
  const params = await entered
  vmCount = vmsOf(params.items).length
  if (EXPECTED_VMS !== undefined) check(vmCount === EXPECTED_VMS, `${vmCount} VMs entered, expected ${EXPECTED_VMS}`)
  for (const vm of vmsOf(params.items)) {
    check(typeof vm.$pool === 'string' && vm._xapiRef.startsWith('OpaqueRef:'), `VM shape ${JSON.stringify(vm)}`)
  }
})

await step('server.getAll shows the pool connected', async () => {
  const s = (await xo.call('server.getAll')).find(s => s.id === serverId)
  check(s.status === 'connected', `status ${s.status}`)
  check(s.label === 'xo-lib scenario', `label ${s.label}`)
  check(typeof s.poolId === 'string', 'poolId')
  check(s.error === undefined, `error ${JSON.stringify(s.error)}`)
})

await step('xo.getAllObjects (filter object, filter string, limit)', async () => {
  const vms = await xo.call('xo.getAllObjects', { filter: { type: 'VM' } })
  check(Object.keys(vms).length === vmCount, `${Object.keys(vms).length} VMs, expected ${vmCount}`)
  for (const [id, vm] of Object.entries(vms)) check(vm.id === id, 'keyed by id')
  const hosts = await xo.call('xo.getAllObjects', { filter: 'type:host' })
  check(Object.keys(hosts).length > 0, 'hosts by complex-matcher')
  check(Object.values(hosts).every(h => h.type === 'host'), 'only hosts')
  const some = await xo.call('xo.getAllObjects', { filter: { type: 'VM' }, limit: 2 })
  check(Object.keys(some).length === Math.min(2, vmCount), 'limit')
  const all = await xo.call('xo.getAllObjects')
  check(Object.keys(all).length >= objects.size, `${Object.keys(all).length} objects, mirror has ${objects.size}`)
})

await step('xo.getAllObjects ndjson through $getFrom', async () => {
  const result = await xo.call('xo.getAllObjects', { filter: { type: 'VM' }, ndjson: true })
  check(Object.keys(result).length === 1 && typeof result.$getFrom === 'string', JSON.stringify(result))
  const url = new URL(result.$getFrom, XO_URL)
  const res = await fetch(url)
  check(res.status === 200, `status ${res.status}`)
  check(res.headers.get('content-type').startsWith('application/json'), res.headers.get('content-type'))
  const lines = (await res.text()).split('\n').filter(l => l !== '')
  check(lines.length === vmCount, `${lines.length} lines`)
  check(lines.every(l => JSON.parse(l).type === 'VM'), 'one VM per line')
  const again = await fetch(url)
  check(again.status === 404, `second GET: ${again.status}`)
})

if (!('vm.start' in methods)) {
  skip('VM start/stop/clone', 'vm.start is not registered on this server')
} else {
  let vmId
  const powerChange = (id, state) =>
    waitAll(p => p.type === 'enter' && p.items[id]?.power_state === state, `VM ${id} ${state}`)
  await step('vm.stop: the power state change arrives', async () => {
    const running = await xo.call('xo.getAllObjects', { filter: { type: 'VM', power_state: 'Running' }, limit: 1 })
    vmId = Object.keys(running)[0]
    check(vmId !== undefined, 'a running VM')
    const halted = powerChange(vmId, 'Halted')
    check((await xo.call('vm.stop', { id: vmId, force: true })) === true, 'vm.stop returns true')
    await halted
    check(objects.get(vmId).power_state === 'Halted', 'mirror updated')
  })
  await step('vm.clone: the new VM enters', async () => {
    const entered = waitAll(
      p => p.type === 'enter' && vmsOf(p.items).some(o => o.name_label === 'xo-lib clone'),
      'clone enters'
    )
    const cloneId = await xo.call('vm.clone', { id: vmId, name: 'xo-lib clone', full_copy: false })
    check(typeof cloneId === 'string', `clone id ${cloneId}`)
    await entered
    check(objects.get(cloneId)?.name_label === 'xo-lib clone', 'clone in the mirror under its id')
  })
  await step('vm.start: the power state change arrives', async () => {
    const running = powerChange(vmId, 'Running')
    check((await xo.call('vm.start', { id: vmId })) === true, 'vm.start returns true')
    await running
    check(objects.get(vmId).power_state === 'Running', 'mirror updated')
  })
  await step('vm.start on a running VM gives vmBadPowerState (13)', async () => {
    const e = await expectError(xo.call('vm.start', { id: vmId }), 13, 'vm.start')
    check(e.data?.objectId === vmId, `objectId ${JSON.stringify(e.data)}`)
  })
  await step('vm.start on an unknown VM gives noSuchObject (1)', () =>
    expectError(xo.call('vm.start', { id: 'no-such-vm' }), 1, 'vm.start')
  )
}

await step('server.disable: the objects leave with all/exit', async () => {
  const vmIds = [...objects.values()].filter(o => o.type === 'VM').map(o => o.id)
  check(vmIds.length > 0, 'VMs in the mirror')
  const exited = waitAll(p => p.type === 'exit' && vmIds[0] in p.items, 'VMs exit')
  await xo.call('server.disable', { id: serverId })
  const params = await exited
  check(Object.values(params.items).every(v => v === 0), 'exit values are 0')
  check([...objects.values()].every(o => o.type !== 'VM'), 'no VM left in the mirror')
  const s = (await xo.call('server.getAll')).find(s => s.id === serverId)
  check(s.status === 'disconnected', `status ${s.status}`)
})

await step('server.enable brings them back; server.remove', async () => {
  await xo.call('server.enable', { id: serverId })
  const vms = await xo.call('xo.getAllObjects', { filter: { type: 'VM' } })
  check(Object.keys(vms).length >= vmCount, `${Object.keys(vms).length} VMs`)
  await xo.call('server.remove', { id: serverId })
  check(Object.keys(await xo.call('xo.getAllObjects')).length === 0, 'no objects after remove')
})

await step('close', () => xo.close())

console.log(`# ${passed} passed, ${failures} failed, ${skipped} skipped (${enterCount} enter, ${exitCount} exit notifications)`)
process.exit(failures === 0 ? 0 : 1)
