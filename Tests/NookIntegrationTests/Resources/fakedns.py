"""A resolver for the network tests: answers every A question with one
address, on a UDP address of the test's own network namespace.

    python3 fakedns.py LISTEN_ADDRESS ANSWER_ADDRESS
"""
import socket
import sys

listen, answer = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((listen, 53))
while True:
    query, peer = s.recvfrom(512)
    if len(query) < 12:
        continue
    # The question ends after its name (length-prefixed labels, then 0) and
    # four bytes of type and class.
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    question = query[12:end + 5]
    qtype = question[-4:-2]
    header = query[:2] + b"\x81\x80" + b"\x00\x01" + (b"\x00\x01" if qtype == b"\x00\x01" else b"\x00\x00") + b"\x00\x00\x00\x00"
    reply = header + question
    if qtype == b"\x00\x01":
        reply += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(answer)
    s.sendto(reply, peer)
