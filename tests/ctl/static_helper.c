/* A statically linked program: `sockmemctl run` must warn that the preload
 * cannot reach it. Built without the project's (sanitizer) flags. */
int main(void)
{
	return 0;
}
