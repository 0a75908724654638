// Preloaded (node --require) into the cache-tests origin server by bench/cache-tests: the
// suite's server calls `server.listen(port)`, which binds every interface; this makes a
// listen() given only a port bind 127.0.0.1 instead, so nothing is exposed off the machine.
'use strict'
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const port = args[0]
  const portOnly = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))
  if (portOnly && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
