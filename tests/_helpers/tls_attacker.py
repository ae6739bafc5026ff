"""A local process attacking a TLS frontend's inner listeners (tls_security_test.ts).

Usage: tls_attacker.py MODE PID OTHERS COUNT. It finds the listeners of
the balancer's process PID, other than the ports OTHERS ("port,port": the
frontend's and the backend's), that its own loopback connections go to: the
inner listeners (/proc/net/tcp names every socket of the host,
/proc/PID/fd those of the process). Every connection it opens completes
its TLS handshake and sends STRANGER.

flood: pre-opens COUNT TLS connections to the inner listener the balancer
  uses, each from a loopback address of its own (127.0.0.9, 127.0.0.10,
  ...; one in four from 127.0.0.1 to the other inner listener), with the
  source port left to the kernel's choice at connect
  (IP_BIND_ADDRESS_NO_PORT): the choice that also gives the balancer's inner
  connections their ports, so they spread over the same range (a port bound
  explicitly would be skipped by every later connect). It prints "ready N"
  with the number of handshakes done, then waits for a line on stdin.
steal: takes the source port P of the balancer's one inner connection, and
  connects from 127.0.0.1 to the other inner listener until the kernel
  gives it P too (it resets the others at once), at most COUNT times: the
  same source address as the balancer's connection, to another listener.
  It prints "stole P" or "missed".

Then it prints "answered M": how many of its connections got any byte back
(were served as someone else).
"""
import os
import socket
import ssl
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h

mode, pid = sys.argv[1], sys.argv[2]
others = {int(port) for port in sys.argv[3].split(",")}
count = int(sys.argv[4])


def tcp_table():
    """The rows of /proc/net/tcp, split into fields."""
    return [line.split() for line in open("/proc/net/tcp").readlines()[1:]]


def address(field):
    ip, port = field.split(":")
    return ip, int(port, 16)


def listening_ports():
    """The ports the balancer's process listens on at 127.0.0.1, but `others`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for fields in tcp_table():
        ip, port = address(fields[1])
        if ip == LOOPBACK and fields[3] == "0A" and fields[9] in inodes and port not in others:
            ports.append(port)
    return ports


def balancer_connections(listeners):
    """Source ports of the live 127.0.0.1 connections to each listener."""
    found = {port: [] for port in listeners}
    for fields in tcp_table():
        local_ip, local_port = address(fields[1])
        remote_ip, remote_port = address(fields[2])
        if local_ip == LOOPBACK and remote_ip == LOOPBACK and remote_port in found \
                and fields[3] == "01":
            found[remote_port].append(local_port)
    return found


found = balancer_connections(listening_ports())
target = max(found, key=lambda port: len(found[port]))
other = next((port for port in found if port != target), target)
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE


def connect(source, to):
    """A TCP connection from `source` to `to`, the port the kernel's choice at connect."""
    raw = socket.socket()
    try:
        raw.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.bind((source, 0))
        raw.settimeout(5)
        raw.connect(("127.0.0.1", to))
        return raw
    except OSError:
        raw.close()
        return None


def attack(raw):
    """Completes the handshake and sends STRANGER; the connection, or None."""
    try:
        conn = context.wrap_socket(raw, server_hostname="api.test")
    except (OSError, ssl.SSLError):
        raw.close()
        return None
    try:
        conn.sendall(b"STRANGER")
    except (OSError, ssl.SSLError):
        pass  # closed at once: still a handshake done, and refused
    return conn


conns = []
if mode == "flood":
    kept = []
    for n in range(9, 9 + count):
        # One source address each: each gets a port of its own walk, so
        # together they cover the range evenly.
        if n % 4:
            raw = connect(f"127.0.{n // 256}.{n % 256}", target)
        else:
            raw = connect("127.0.0.1", other)
        if raw is not None:
            kept.append(raw)
    with ThreadPoolExecutor(16) as pool:
        conns = [conn for conn in pool.map(attack, kept) if conn is not None]
    print("ready", len(conns), flush=True)
    sys.stdin.readline()
else:
    wanted = found[target][0]
    for _ in range(count):
        raw = connect("127.0.0.1", other)
        if raw is None:
            continue
        if raw.getsockname()[1] == wanted:
            conn = attack(raw)
            if conn is not None:
                conns.append(conn)
            break
        raw.close()  # a reset: the port is free again at once
    print(f"stole {wanted}" if conns else "missed", flush=True)
    time.sleep(0.5)  # time for an answer, had it been served

answered = 0
for conn in conns:
    conn.setblocking(False)
    try:
        if conn.recv(100):
            answered += 1
    except (ssl.SSLWantReadError, OSError):
        pass
    conn.close()
print("answered", answered, flush=True)
