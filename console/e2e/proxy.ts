// A TCP proxy in front of the service, for tests that need the network to fail: `drop()`
// cuts every open connection (an SSE stream included), `offline` refuses new ones.
import net from "node:net";

export interface Proxy {
  url: string;
  offline: boolean;
  drop(): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<Proxy> {
  const to = new URL(target);
  const sockets = new Set<net.Socket>();
  const proxy: Proxy = {
    url: "",
    offline: false,
    drop() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close: () => new Promise<void>((done) => (proxy.drop(), server.close(() => done()))),
  };
  const server = net.createServer((client) => {
    if (proxy.offline) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  proxy.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
