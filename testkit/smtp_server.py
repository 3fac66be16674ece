"""A real SMTP server for retl's tests (aiosmtpd), run by testkit/src/smtp.rs.

It listens on 127.0.0.1 (a free port), prints {"port": N} on stdout once it
accepts connections, and saves each message it accepts in --dir as
NNNN.eml (the message as received) and NNNN.json (the envelope: mail_from,
rcpt_tos, tls, user). It reads commands from stdin, one JSON object a line,
and answers each with one line of JSON:

  {"cmd": "reject", "code": 451, "count": 2}   the next 2 messages get 451
  {"cmd": "stats"}                             counts so far

It exits when stdin closes, so it never outlives the test that started it.

Options: --tls none|starttls|implicit (with --cert/--key), and a user name
and password in RETL_SMTP_USER / RETL_SMTP_PASSWORD to require AUTH (PLAIN
or LOGIN; offered only over TLS, as real servers do). --echo-credentials
makes a refused login echo what was sent, as careless servers do.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

REPLIES = {
    451: "451 4.3.0 Temporary failure, try again later (scripted)",
    550: "550 5.7.1 Message refused by policy (scripted)",
}


class State:
    def __init__(self, directory):
        self.directory = directory
        self.rejects = []
        self.accepted = 0
        self.rejected = 0
        self.auth_failures = 0

    def stats(self):
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "auth_failures": self.auth_failures,
            "pending_rejects": len(self.rejects),
        }


class Handler:
    def __init__(self, state):
        self.state = state

    async def handle_DATA(self, server, session, envelope):
        state = self.state
        if state.rejects:
            code = state.rejects.pop(0)
            state.rejected += 1
            return REPLIES.get(code, f"{code} scripted reply")
        state.accepted += 1
        stem = os.path.join(state.directory, f"{state.accepted:04}")
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode("utf-8", "replace")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": encrypted,
            "user": user,
        }
        # The .json is written last, by rename: a reader that sees it sees
        # the whole message.
        with open(stem + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(stem + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.replace(stem + ".json.tmp", stem + ".json")
        return f"250 2.0.0 OK: queued as {state.accepted:04}"


def authenticator(state, user, password, echo):
    def check(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        ):
            return AuthResult(success=True, auth_data=auth_data)
        state.auth_failures += 1
        message = None
        if echo and isinstance(auth_data, LoginPassword):
            message = (
                "535 5.7.8 Authentication credentials invalid for user "
                f"{auth_data.login.decode()} with password {auth_data.password.decode()}"
            )
        return AuthResult(success=False, handled=False, message=message)

    return check


async def commands(state, stop):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            stop.set()
            return
        try:
            cmd = json.loads(line)
            if cmd.get("cmd") == "reject":
                state.rejects.extend([int(cmd["code"])] * int(cmd.get("count", 1)))
            elif cmd.get("cmd") != "stats":
                raise ValueError(f"unknown command {cmd!r}")
            answer = {"ok": True, **state.stats()}
        except Exception as e:  # the test gets the error instead of a hang
            answer = {"ok": False, "error": str(e)}
        print(json.dumps(answer), flush=True)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--echo-credentials", action="store_true")
    args = p.parse_args()

    state = State(args.dir)
    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    user = os.environ.get("RETL_SMTP_USER")
    password = os.environ.get("RETL_SMTP_PASSWORD")
    auth = {}
    if user is not None:
        auth = {
            "authenticator": authenticator(state, user, password, args.echo_credentials),
            "auth_required": True,
            # aiosmtpd only knows of STARTTLS: on implicit TLS the connection is
            # encrypted from the start, so AUTH needs no further TLS there.
            "auth_require_tls": args.tls != "implicit",
        }

    def factory():
        return SMTP(
            Handler(state),
            hostname="smtp.test",
            tls_context=context if args.tls == "starttls" else None,
            **auth,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, sock=sock, ssl=context if args.tls == "implicit" else None
    )
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    stop = asyncio.Event()
    task = asyncio.create_task(commands(state, stop))
    await stop.wait()
    task.cancel()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
