// @hocuspocus/server, unmodified and without extensions (in-memory documents), on loopback.
//   node hocuspocus-server.mjs <port>     prints "listening <port>" once it accepts connections
import { Server } from '@hocuspocus/server'

const port = Number(process.argv[2] || 0)
const server = new Server({ port, address: '127.0.0.1', quiet: true, stopOnSignals: true })
await server.listen()
process.stdout.write(`listening ${server.address.port}\n`)
