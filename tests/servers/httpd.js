'use strict';
// The Node.js server of tests/servers/node.sh (Debian's nodejs 18, or newer).
//
// Usage: node httpd.js --port PORT [--forbidden PORT]   server.listen(PORT)
//        node httpd.js --fd FD                          server.listen({fd: FD})
// --forbidden: first tries net.createServer().listen(PORT), an address outside
// the policy, and prints "forbidden PORT: CODE errno N" (or "bound").
const http = require('http');
const net = require('net');

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

function serve() {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/plain' });
    response.end(`hello from node ${process.version}\n`);
  });
  server.on('error', (error) => {
    console.error(`httpd.js: ${error.code} (errno ${error.errno}): ${error.message}`);
    process.exit(1);
  });
  const fd = option('--fd');
  const target = fd !== undefined ? { fd: Number(fd) } : Number(option('--port'));
  server.listen(target, () => console.log(`serving on ${JSON.stringify(server.address())}`));
  process.on('SIGTERM', () => process.exit(0));
}

const forbidden = option('--forbidden');
if (forbidden === undefined) {
  serve();
} else {
  const probe = net.createServer();
  probe.on('error', (error) => {
    console.log(`forbidden ${forbidden}: ${error.code} errno ${error.errno}`);
    serve();
  });
  probe.listen(Number(forbidden), () => {
    console.log(`forbidden ${forbidden}: bound`);
    probe.close(serve);
  });
}
