"""A local process attacking a TLS frontend's inner listeners (tls_security_test.ts).

It finds the listener of the balancer's process (pid argv[1]), other than
those of argv[3] ("port,port"), that its own loopback connections go to: an
inner listener (/proc/net/tcp names every socket of the host, /proc/PID/fd
those of the process). It pre-opens argv[2] TLS connections to it, each from a
loopback address of its own (127.0.0.9, 127.0.0.10, ...), with the source
port left to the kernel's choice at connect (IP_BIND_ADDRESS_NO_PORT): the
choice that also gives the balancer's inner connections their ports, so
they spread over the same range (a port bound explicitly would be skipped
by every later connect). Each completes its handshake and sends STRANGER.
It prints "ready N" with the number of handshakes done, then waits for a
line on stdin and prints "answered M": how many got any byte back (served).
"""
import os
import socket
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor

LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h

pid = sys.argv[1]
count = int(sys.argv[2])
others = {int(port) for port in sys.argv[3].split(",")}  # the frontend's and backend's


def listening_ports():
    """The ports the balancer's process (argv[1]) listens on at 127.0.0.1."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for line in open("/proc/net/tcp").readlines()[1:]:
        fields = line.split()
        local_ip, local_port = fields[1].split(":")
        if local_ip == LOOPBACK and fields[3] == "0A" and fields[9] in inodes:
            ports.append(int(local_port, 16))
    return ports


candidates = [port for port in listening_ports() if port not in others]


def balancer_ports():
    """Source ports of 127.0.0.1 connections to each listener."""
    found = {port: [] for port in candidates}
    for line in open("/proc/net/tcp").readlines()[1:]:
        fields = line.split()
        local_ip, local_port = fields[1].split(":")
        remote_ip, remote_port = fields[2].split(":")
        if local_ip == LOOPBACK and remote_ip == LOOPBACK and int(remote_port, 16) in found:
            found[int(remote_port, 16)].append(int(local_port, 16))
    return found


found = balancer_ports()
target = max(found, key=lambda port: len(found[port]))
kept = []
for n in range(9, 9 + count):
    # One connection per source address: each gets a port of its own walk,
    # so together they cover the range evenly.
    raw = socket.socket()
    try:
        raw.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        raw.bind((f"127.0.{n // 256}.{n % 256}", 0))
        raw.settimeout(5)
        raw.connect(("127.0.0.1", target))
        kept.append(raw)
    except OSError:
        raw.close()

context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE


def attack(raw):
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


with ThreadPoolExecutor(16) as pool:
    conns = [conn for conn in pool.map(attack, kept) if conn is not None]
print("ready", len(conns), flush=True)
sys.stdin.readline()
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
