#include <nats/nats.h>

/* cnats' own constructor for a message whose header block is already encoded, as it builds the
   messages it receives: one allocation holds the message, subject, reply, header block and
   payload, and the header block is sent as it is (parsed only if a header is read). libnats 3.x
   exports it (3.4.1 as Debian ships it, and every release since) without declaring it in
   nats.h. `buf` is the header block followed by the payload; `hdrLen` is the block's length. */
natsStatus natsMsg_create(natsMsg **newMsg, const char *subject, int subjLen, const char *reply, int replyLen,
                          const char *buf, int bufLen, int hdrLen);
