// @tus/server with @tus/file-store on one directory, for scripts/bench-peers.sh:
//   node server.mjs HOST PORT DIR
// Serves /files/ like tusd-rs, on node's own http server, and says
// "listening" once it accepts connections.
//
// One addition: HEAD answers carry `Content-Length: 0`. @tus/server sends
// none and keeps the connection alive, so a client that reads responses by
// their framing (wrk) waits for a body until the connection closes; tusd-rs
// and rustus frame their HEAD answers. Without it node would measure ~0/s.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [host, port, directory] = process.argv.slice(2);
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => {
  if (req.method === 'HEAD') res.setHeader('Content-Length', '0');
  tus.handle(req, res);
});
server.listen(Number(port), host, () => console.log(`listening on ${host}:${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
