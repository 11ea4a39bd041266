// cnet's own implementation of the libmnl API (the prototypes of <libmnl/libmnl.h>), linked
// into statically linked cnet builds, where Debian ships no libmnl.a. libnftnl uses it to
// build and parse nf_tables messages, and the `mnl` crate for the netlink socket.
//
// Semantics follow libmnl's documentation: attributes are `struct nlattr` headers padded to
// 4 bytes (MNL_ALIGN), `*_check` variants refuse to grow a message past `buflen`, validation
// sets errno (ERANGE: length, EINVAL: bad string or type, EOPNOTSUPP: type above max) and
// returns -1, callbacks return MNL_CB_ERROR (-1), MNL_CB_STOP (0) or MNL_CB_OK (1).
// Tested against the kernel through the nftables and rtnetlink tests of the workspace, and on
// its own by cnet-policy's `mnl_abi` test.

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

// ---------------------------------------------------------------------------------------
// Sockets

struct mnl_socket {
	int fd;
	struct sockaddr_nl addr;
};

API struct mnl_socket *mnl_socket_fdopen(int fd)
{
	struct sockaddr_nl addr;
	socklen_t len = sizeof(addr);

	if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
		return NULL;
	if (len != sizeof(addr) || addr.nl_family != AF_NETLINK) {
		errno = EINVAL;
		return NULL;
	}
	struct mnl_socket *nl = calloc(1, sizeof(*nl));
	if (nl == NULL)
		return NULL;
	nl->fd = fd;
	nl->addr = addr;
	return nl;
}

API struct mnl_socket *mnl_socket_open2(int bus, int flags)
{
	struct mnl_socket *nl = calloc(1, sizeof(*nl));
	if (nl == NULL)
		return NULL;
	nl->fd = socket(AF_NETLINK, SOCK_RAW | flags, bus);
	if (nl->fd < 0) {
		int e = errno;
		free(nl);
		errno = e;
		return NULL;
	}
	return nl;
}

API struct mnl_socket *mnl_socket_open(int bus)
{
	return mnl_socket_open2(bus, 0);
}

API int mnl_socket_bind(struct mnl_socket *nl, unsigned int groups, pid_t pid)
{
	socklen_t len = sizeof(nl->addr);

	memset(&nl->addr, 0, sizeof(nl->addr));
	nl->addr.nl_family = AF_NETLINK;
	nl->addr.nl_groups = groups;
	nl->addr.nl_pid = (uint32_t)pid;
	if (bind(nl->fd, (struct sockaddr *)&nl->addr, sizeof(nl->addr)) < 0)
		return -1;
	if (getsockname(nl->fd, (struct sockaddr *)&nl->addr, &len) < 0)
		return -1;
	if (len != sizeof(nl->addr) || nl->addr.nl_family != AF_NETLINK) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

API int mnl_socket_close(struct mnl_socket *nl)
{
	int ret = close(nl->fd);
	free(nl);
	return ret;
}

API int mnl_socket_get_fd(const struct mnl_socket *nl)
{
	return nl->fd;
}

API unsigned int mnl_socket_get_portid(const struct mnl_socket *nl)
{
	return nl->addr.nl_pid;
}

API ssize_t mnl_socket_sendto(const struct mnl_socket *nl, const void *req, size_t siz)
{
	static const struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	return sendto(nl->fd, req, siz, 0, (const struct sockaddr *)&kernel, sizeof(kernel));
}

API ssize_t mnl_socket_recvfrom(const struct mnl_socket *nl, void *buf, size_t siz)
{
	struct sockaddr_nl from;
	struct iovec iov = { .iov_base = buf, .iov_len = siz };
	struct msghdr msg = {
		.msg_name = &from,
		.msg_namelen = sizeof(from),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	ssize_t ret = recvmsg(nl->fd, &msg, 0);
	if (ret < 0)
		return ret;
	if (msg.msg_flags & MSG_TRUNC) {
		errno = ENOSPC;
		return -1;
	}
	if (msg.msg_namelen != sizeof(from)) {
		errno = EINVAL;
		return -1;
	}
	return ret;
}

API int mnl_socket_setsockopt(const struct mnl_socket *nl, int type, void *buf, socklen_t len)
{
	return setsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

API int mnl_socket_getsockopt(const struct mnl_socket *nl, int type, void *buf, socklen_t *len)
{
	return getsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

// ---------------------------------------------------------------------------------------
// Messages

API size_t mnl_nlmsg_size(size_t len)
{
	return len + MNL_NLMSG_HDRLEN;
}

API size_t mnl_nlmsg_get_payload_len(const struct nlmsghdr *nlh)
{
	return nlh->nlmsg_len - MNL_NLMSG_HDRLEN;
}

API struct nlmsghdr *mnl_nlmsg_put_header(void *buf)
{
	struct nlmsghdr *nlh = buf;
	memset(buf, 0, MNL_NLMSG_HDRLEN);
	nlh->nlmsg_len = MNL_NLMSG_HDRLEN;
	return nlh;
}

API void *mnl_nlmsg_put_extra_header(struct nlmsghdr *nlh, size_t size)
{
	char *tail = (char *)nlh + nlh->nlmsg_len;
	nlh->nlmsg_len += MNL_ALIGN(size);
	memset(tail, 0, MNL_ALIGN(size));
	return tail;
}

API void *mnl_nlmsg_get_payload(const struct nlmsghdr *nlh)
{
	return (char *)nlh + MNL_NLMSG_HDRLEN;
}

API void *mnl_nlmsg_get_payload_offset(const struct nlmsghdr *nlh, size_t offset)
{
	return (char *)nlh + MNL_NLMSG_HDRLEN + MNL_ALIGN(offset);
}

API void *mnl_nlmsg_get_payload_tail(const struct nlmsghdr *nlh)
{
	return (char *)nlh + MNL_ALIGN(nlh->nlmsg_len);
}

API bool mnl_nlmsg_ok(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(struct nlmsghdr) &&
	       nlh->nlmsg_len >= sizeof(struct nlmsghdr) &&
	       (int)nlh->nlmsg_len <= len;
}

API struct nlmsghdr *mnl_nlmsg_next(const struct nlmsghdr *nlh, int *len)
{
	*len -= (int)MNL_ALIGN(nlh->nlmsg_len);
	return (struct nlmsghdr *)((char *)nlh + MNL_ALIGN(nlh->nlmsg_len));
}

API bool mnl_nlmsg_seq_ok(const struct nlmsghdr *nlh, unsigned int seq)
{
	return nlh->nlmsg_seq && seq ? nlh->nlmsg_seq == seq : true;
}

API bool mnl_nlmsg_portid_ok(const struct nlmsghdr *nlh, unsigned int portid)
{
	return nlh->nlmsg_pid && portid ? nlh->nlmsg_pid == portid : true;
}

// A debugging aid in libmnl: here one line per message (length, type, flags, seq, portid)
// and the payload in hex, 16 bytes a line.
API void mnl_nlmsg_fprintf(FILE *fd, const void *data, size_t datalen, size_t extra_header_size)
{
	const struct nlmsghdr *nlh = data;
	int len = (int)datalen;
	(void)extra_header_size;

	while (mnl_nlmsg_ok(nlh, len)) {
		fprintf(fd, "nlmsg len=%u type=%u flags=0x%04x seq=%u portid=%u\n",
			nlh->nlmsg_len, nlh->nlmsg_type, nlh->nlmsg_flags, nlh->nlmsg_seq,
			nlh->nlmsg_pid);
		const unsigned char *p = mnl_nlmsg_get_payload(nlh);
		size_t n = mnl_nlmsg_get_payload_len(nlh);
		for (size_t i = 0; i < n; i++)
			fprintf(fd, "%02x%s", p[i], (i % 16 == 15 || i + 1 == n) ? "\n" : " ");
		nlh = mnl_nlmsg_next(nlh, &len);
	}
}

// ---------------------------------------------------------------------------------------
// Batches of messages in one buffer

struct mnl_nlmsg_batch {
	char *buf;
	size_t limit;
	size_t buflen;
	char *cur;
	bool overflow;
};

API struct mnl_nlmsg_batch *mnl_nlmsg_batch_start(void *buf, size_t limit)
{
	struct mnl_nlmsg_batch *b = malloc(sizeof(*b));
	if (b == NULL)
		return NULL;
	b->buf = buf;
	b->limit = limit;
	b->buflen = 0;
	b->cur = buf;
	b->overflow = false;
	return b;
}

API void mnl_nlmsg_batch_stop(struct mnl_nlmsg_batch *b)
{
	free(b);
}

// The message at the current position is complete: take it into the batch if it fits, else
// mark the batch full (the message stays where it is for the next batch; see reset).
API bool mnl_nlmsg_batch_next(struct mnl_nlmsg_batch *b)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)b->cur;

	if (b->buflen + nlh->nlmsg_len > b->limit) {
		b->overflow = true;
		return false;
	}
	b->buflen += nlh->nlmsg_len;
	b->cur = b->buf + b->buflen;
	return true;
}

API void mnl_nlmsg_batch_reset(struct mnl_nlmsg_batch *b)
{
	if (b->overflow) {
		struct nlmsghdr *nlh = (struct nlmsghdr *)b->cur;
		memmove(b->buf, b->cur, nlh->nlmsg_len);
		b->buflen = nlh->nlmsg_len;
		b->cur = b->buf + b->buflen;
		b->overflow = false;
	} else {
		b->buflen = 0;
		b->cur = b->buf;
	}
}

API size_t mnl_nlmsg_batch_size(struct mnl_nlmsg_batch *b)
{
	return b->buflen;
}

API void *mnl_nlmsg_batch_head(struct mnl_nlmsg_batch *b)
{
	return b->buf;
}

API void *mnl_nlmsg_batch_current(struct mnl_nlmsg_batch *b)
{
	return b->cur;
}

API bool mnl_nlmsg_batch_is_empty(struct mnl_nlmsg_batch *b)
{
	return b->buflen == 0;
}

// ---------------------------------------------------------------------------------------
// Attributes

API uint16_t mnl_attr_get_type(const struct nlattr *attr)
{
	return attr->nla_type & NLA_TYPE_MASK;
}

API uint16_t mnl_attr_get_len(const struct nlattr *attr)
{
	return attr->nla_len;
}

API uint16_t mnl_attr_get_payload_len(const struct nlattr *attr)
{
	return attr->nla_len - MNL_ATTR_HDRLEN;
}

API void *mnl_attr_get_payload(const struct nlattr *attr)
{
	return (char *)attr + MNL_ATTR_HDRLEN;
}

API bool mnl_attr_ok(const struct nlattr *attr, int len)
{
	return len >= (int)sizeof(struct nlattr) && attr->nla_len >= sizeof(struct nlattr) &&
	       (int)attr->nla_len <= len;
}

API struct nlattr *mnl_attr_next(const struct nlattr *attr)
{
	return (struct nlattr *)((char *)attr + MNL_ALIGN(attr->nla_len));
}

API int mnl_attr_type_valid(const struct nlattr *attr, uint16_t maxtype)
{
	if (mnl_attr_get_type(attr) > maxtype) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return 1;
}

static int validate_len(const struct nlattr *attr, enum mnl_attr_data_type type, size_t exp_len)
{
	uint16_t len = mnl_attr_get_payload_len(attr);
	const char *data = mnl_attr_get_payload(attr);

	if (len < exp_len) {
		errno = ERANGE;
		return -1;
	}
	switch (type) {
	case MNL_TYPE_FLAG:
		if (len > 0) {
			errno = ERANGE;
			return -1;
		}
		break;
	case MNL_TYPE_NUL_STRING:
		if (len == 0) {
			errno = ERANGE;
			return -1;
		}
		if (data[len - 1] != '\0') {
			errno = EINVAL;
			return -1;
		}
		break;
	case MNL_TYPE_STRING:
		if (len == 0) {
			errno = ERANGE;
			return -1;
		}
		break;
	case MNL_TYPE_NESTED:
		// Empty nests are allowed; a non-empty one holds at least one attribute header.
		if (len != 0 && len < MNL_ATTR_HDRLEN) {
			errno = ERANGE;
			return -1;
		}
		break;
	default:
		break;
	}
	if (exp_len && len > exp_len) {
		errno = ERANGE;
		return -1;
	}
	return 0;
}

API int mnl_attr_validate(const struct nlattr *attr, enum mnl_attr_data_type type)
{
	size_t exp_len;

	switch (type) {
	case MNL_TYPE_U8:
		exp_len = sizeof(uint8_t);
		break;
	case MNL_TYPE_U16:
		exp_len = sizeof(uint16_t);
		break;
	case MNL_TYPE_U32:
		exp_len = sizeof(uint32_t);
		break;
	case MNL_TYPE_U64:
	case MNL_TYPE_MSECS:
		exp_len = sizeof(uint64_t);
		break;
	default:
		if ((int)type < 0 || type >= MNL_TYPE_MAX) {
			errno = EINVAL;
			return -1;
		}
		exp_len = 0;
		break;
	}
	return validate_len(attr, type, exp_len);
}

API int mnl_attr_validate2(const struct nlattr *attr, enum mnl_attr_data_type type, size_t exp_len)
{
	if ((int)type < 0 || type >= MNL_TYPE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return validate_len(attr, type, exp_len);
}

API int mnl_attr_parse_payload(const void *payload, size_t payload_len, mnl_attr_cb_t cb,
			       void *data)
{
	const struct nlattr *attr = payload;
	int left = (int)payload_len;
	int ret = MNL_CB_OK;

	while (mnl_attr_ok(attr, left)) {
		ret = cb(attr, data);
		if (ret <= MNL_CB_STOP)
			return ret;
		left -= (int)MNL_ALIGN(attr->nla_len);
		attr = mnl_attr_next(attr);
	}
	return ret;
}

API int mnl_attr_parse(const struct nlmsghdr *nlh, unsigned int offset, mnl_attr_cb_t cb,
		       void *data)
{
	const char *start = mnl_nlmsg_get_payload_offset(nlh, offset);
	const char *end = mnl_nlmsg_get_payload_tail(nlh);
	if (end < start)
		return MNL_CB_OK;
	return mnl_attr_parse_payload(start, (size_t)(end - start), cb, data);
}

API int mnl_attr_parse_nested(const struct nlattr *nested, mnl_attr_cb_t cb, void *data)
{
	return mnl_attr_parse_payload(mnl_attr_get_payload(nested),
				      mnl_attr_get_payload_len(nested), cb, data);
}

API uint8_t mnl_attr_get_u8(const struct nlattr *attr)
{
	return *(const uint8_t *)mnl_attr_get_payload(attr);
}

API uint16_t mnl_attr_get_u16(const struct nlattr *attr)
{
	uint16_t v;
	memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
	return v;
}

API uint32_t mnl_attr_get_u32(const struct nlattr *attr)
{
	uint32_t v;
	memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
	return v;
}

// 64-bit payloads are only 4-byte aligned in a message.
API uint64_t mnl_attr_get_u64(const struct nlattr *attr)
{
	uint64_t v;
	memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
	return v;
}

API const char *mnl_attr_get_str(const struct nlattr *attr)
{
	return mnl_attr_get_payload(attr);
}

API void mnl_attr_put(struct nlmsghdr *nlh, uint16_t type, size_t len, const void *data)
{
	struct nlattr *attr = mnl_nlmsg_get_payload_tail(nlh);
	size_t attr_len = MNL_ATTR_HDRLEN + len;

	attr->nla_type = type;
	attr->nla_len = (uint16_t)attr_len;
	if (len)
		memcpy(mnl_attr_get_payload(attr), data, len);
	size_t pad = MNL_ALIGN(len) - len;
	if (pad)
		memset((char *)mnl_attr_get_payload(attr) + len, 0, pad);
	nlh->nlmsg_len += MNL_ALIGN(attr_len);
}

API void mnl_attr_put_u8(struct nlmsghdr *nlh, uint16_t type, uint8_t data)
{
	mnl_attr_put(nlh, type, sizeof(data), &data);
}

API void mnl_attr_put_u16(struct nlmsghdr *nlh, uint16_t type, uint16_t data)
{
	mnl_attr_put(nlh, type, sizeof(data), &data);
}

API void mnl_attr_put_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t data)
{
	mnl_attr_put(nlh, type, sizeof(data), &data);
}

API void mnl_attr_put_u64(struct nlmsghdr *nlh, uint16_t type, uint64_t data)
{
	mnl_attr_put(nlh, type, sizeof(data), &data);
}

API void mnl_attr_put_str(struct nlmsghdr *nlh, uint16_t type, const char *data)
{
	mnl_attr_put(nlh, type, strlen(data), data);
}

API void mnl_attr_put_strz(struct nlmsghdr *nlh, uint16_t type, const char *data)
{
	mnl_attr_put(nlh, type, strlen(data) + 1, data);
}

// Whether an attribute with `len` bytes of payload still fits a message buffer of `buflen`.
static bool fits(const struct nlmsghdr *nlh, size_t buflen, size_t len)
{
	return nlh->nlmsg_len + MNL_ATTR_HDRLEN + MNL_ALIGN(len) <= buflen;
}

API bool mnl_attr_put_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type, size_t len,
			    const void *data)
{
	if (!fits(nlh, buflen, len))
		return false;
	mnl_attr_put(nlh, type, len, data);
	return true;
}

API bool mnl_attr_put_u8_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type, uint8_t data)
{
	return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

API bool mnl_attr_put_u16_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type,
				uint16_t data)
{
	return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

API bool mnl_attr_put_u32_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type,
				uint32_t data)
{
	return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

API bool mnl_attr_put_u64_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type,
				uint64_t data)
{
	return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

API bool mnl_attr_put_str_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type,
				const char *data)
{
	return mnl_attr_put_check(nlh, buflen, type, strlen(data), data);
}

API bool mnl_attr_put_strz_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type,
				 const char *data)
{
	return mnl_attr_put_check(nlh, buflen, type, strlen(data) + 1, data);
}

API struct nlattr *mnl_attr_nest_start(struct nlmsghdr *nlh, uint16_t type)
{
	struct nlattr *start = mnl_nlmsg_get_payload_tail(nlh);
	start->nla_type = NLA_F_NESTED | type;
	start->nla_len = MNL_ATTR_HDRLEN;
	nlh->nlmsg_len += MNL_ATTR_HDRLEN;
	return start;
}

API struct nlattr *mnl_attr_nest_start_check(struct nlmsghdr *nlh, size_t buflen, uint16_t type)
{
	if (!fits(nlh, buflen, 0))
		return NULL;
	return mnl_attr_nest_start(nlh, type);
}

API void mnl_attr_nest_end(struct nlmsghdr *nlh, struct nlattr *start)
{
	start->nla_len = (uint16_t)((char *)mnl_nlmsg_get_payload_tail(nlh) - (char *)start);
}

API void mnl_attr_nest_cancel(struct nlmsghdr *nlh, struct nlattr *start)
{
	nlh->nlmsg_len -= (uint32_t)((char *)mnl_nlmsg_get_payload_tail(nlh) - (char *)start);
}

// ---------------------------------------------------------------------------------------
// Running callbacks over received messages

static int cb_noop(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(void)data;
	return MNL_CB_OK;
}

static int cb_error(const struct nlmsghdr *nlh, void *data)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	(void)data;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr))) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	// An acknowledgement carries error 0: the request is done.
	errno = err->error < 0 ? -err->error : err->error;
	return err->error == 0 ? MNL_CB_STOP : MNL_CB_ERROR;
}

static int cb_stop(const struct nlmsghdr *nlh, void *data)
{
	(void)nlh;
	(void)data;
	return MNL_CB_STOP;
}

// The default handler of a control message type (NLMSG_NOOP .. NLMSG_OVERRUN), if any.
static mnl_cb_t default_control(uint16_t type)
{
	switch (type) {
	case NLMSG_NOOP:
	case NLMSG_OVERRUN:
		return cb_noop;
	case NLMSG_ERROR:
		return cb_error;
	case NLMSG_DONE:
		return cb_stop;
	default:
		return NULL;
	}
}

API int mnl_cb_run2(const void *buf, size_t numbytes, unsigned int seq, unsigned int portid,
		    mnl_cb_t cb_data, void *data, mnl_cb_t *cb_ctl_array,
		    unsigned int cb_ctl_array_len)
{
	const struct nlmsghdr *nlh = buf;
	int len = (int)numbytes;
	int ret = MNL_CB_OK;

	while (mnl_nlmsg_ok(nlh, len)) {
		if (!mnl_nlmsg_portid_ok(nlh, portid)) {
			errno = ESRCH;
			return -1;
		}
		if (!mnl_nlmsg_seq_ok(nlh, seq)) {
			errno = EPROTO;
			return -1;
		}
		if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) {
			errno = EINTR;
			return -1;
		}
		if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
			if (cb_data != NULL) {
				ret = cb_data(nlh, data);
				if (ret <= MNL_CB_STOP)
					return ret;
			}
		} else {
			// The caller's handlers replace the defaults for the types they cover.
			mnl_cb_t cb = nlh->nlmsg_type < cb_ctl_array_len
					      ? (cb_ctl_array != NULL ? cb_ctl_array[nlh->nlmsg_type] : NULL)
					      : default_control(nlh->nlmsg_type);
			if (cb != NULL) {
				ret = cb(nlh, data);
				if (ret <= MNL_CB_STOP)
					return ret;
			}
		}
		nlh = mnl_nlmsg_next(nlh, &len);
	}
	return ret;
}

API int mnl_cb_run(const void *buf, size_t numbytes, unsigned int seq, unsigned int portid,
		   mnl_cb_t cb_data, void *data)
{
	return mnl_cb_run2(buf, numbytes, seq, portid, cb_data, data, NULL, 0);
}
