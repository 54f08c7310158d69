/* Prints the option table (lib/config.c) as markdown: the README's
 * "Configuration" table is this output, and the docs.readme_options test
 * checks that it still is. */
#include "config.h"

int main(void)
{
	return sm_config_print_markdown(1) < 0 ? 1 : 0;
}
