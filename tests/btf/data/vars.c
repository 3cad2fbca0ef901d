/* Types and variables only, no code: clang's .BTF then has no line-info strings, so our
 * builder must reproduce it byte for byte. Rebuild with ./build.sh. */
struct point { int x, y; unsigned flags : 4; };
enum mode { OFF, ON };
typedef struct point point_t;
point_t origin;
enum mode modes[3] = { ON, OFF, ON };
const volatile long long version = 1;
